// SPDX-License-Identifier: Apache-2.0
// mcpwarden's resolver for a sandbox. The kernel redirects every port-53 flow of the sandbox
// here (UDP and TCP, any destination); names the policy allows are forwarded upstream and
// their addresses admitted into the sandbox's allow-list *before* the answer is released;
// other names get REFUSED without ever leaving the host, and an audit event.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <pthread.h>

#include <thread>
#include <unordered_map>
#include <vector>

#include "dns_message.h"
#include "enforcer.h"
#include "fd.h"
#include "policy.h"

namespace mcpwarden {

struct DnsUpstream {
    sockaddr_storage addr{};
    socklen_t len = 0;
    std::string text;
};

// "1.1.1.1", "127.0.0.53:5353", "[2001:db8::1]:53", "::1". Throws Error(policy_invalid).
DnsUpstream parse_upstream(const std::string& text);
// The policy's dns.upstream, or the nameservers of /etc/resolv.conf.
std::vector<DnsUpstream> dns_upstreams(const Dns& dns);

class DnsProxy;

// The one resolver thread of a process: it serves the sockets of every DnsProxy (one per
// sandbox) through one epoll set, and times out their upstream queries. It starts with the
// first proxy and ends with the last, so a process without sandboxes has no resolver thread.
class ResolverLoop {
public:
    static ResolverLoop& get();
    void add(DnsProxy* proxy);
    // After it returns the loop no longer touches the proxy (it waits out one being handled).
    void remove(DnsProxy* proxy);

private:
    ResolverLoop() = default;
    void run();
    template <typename Fn>
    void with_proxy(std::uint64_t id, Fn&& fn);

    std::mutex lifecycle_;  // starting and ending the thread
    std::mutex mutex_;      // proxies_ (taken before a proxy's serve lock, never after)
    std::unordered_map<std::uint64_t, DnsProxy*> proxies_;
    std::uint64_t next_id_ = 1;
    UniqueFd epoll_, wake_;
    pthread_t thread_{};
    bool running_ = false;
    std::atomic<bool> quit_{false};
};

class DnsProxy {
public:
    struct Hooks {
        // The addresses of an answer for an allowed name; false refuses the answer (SERVFAIL).
        std::function<bool(const std::string& name, const std::vector<std::uint32_t>& rules,
                           const std::vector<DnsAddress>& addresses)>
            admit;
        std::function<void(const std::string& name, std::uint16_t qtype)> refused;
        std::function<void()> tick;  // about every 100 ms, on the resolver thread
    };
    struct Stats {
        std::uint64_t answered = 0, refused = 0, malformed = 0, failed = 0;
    };

    // Binds UDP and TCP on 127.0.0.1 (and ::1 when available) on one ephemeral port each and
    // starts serving (on the process's ResolverLoop; hooks run on its thread). Throws
    // Error(sandbox_unavailable) if it cannot. Nonzero ports in `wanted` are tried first (the
    // address a restarted agent's sandboxes already resolve through). With a `netns_fd` (a
    // network namespace: /proc/PID/ns/net) the listening sockets are made inside it (a
    // container's own network); the upstream sockets stay in the caller's namespace.
    DnsProxy(const Policy& policy, std::vector<DnsUpstream> upstreams, Hooks hooks, DnsTarget wanted = {},
             int netns_fd = -1);
    ~DnsProxy();
    DnsProxy(const DnsProxy&) = delete;
    DnsProxy& operator=(const DnsProxy&) = delete;

    DnsTarget target() const { return target_; }
    // Live policy update: queries screened from now on use this policy's host rules.
    void set_policy(const Policy& policy);
    std::shared_ptr<const Policy> policy() const;
    Stats stats() const;
    void stop();

    // Which allow rules (indexes) let the sandbox resolve `name`; empty = refused.
    static std::vector<std::uint32_t> rules_for(const Policy& policy, const std::string& name);

private:
    friend class ResolverLoop;
    struct Pending;
    std::vector<int> loop_fds() const;  // udp4, udp6, tcp4, tcp6, then the upstream sockets (-1: none)
    void on_ready(size_t slot, std::span<std::uint8_t> buf);
    void on_tick();
    void on_query(int fd, const std::vector<std::uint8_t>& query, const sockaddr_storage& from, socklen_t fromlen);
    void on_upstream(Pending& p);
    void serve_tcp(int fd);
    std::vector<std::uint8_t> resolve_tcp(const std::vector<std::uint8_t>& query);
    // Checks the query; returns the reply to send now (refused/malformed) or empty to forward.
    std::vector<std::uint8_t> screen(const std::vector<std::uint8_t>& query, DnsMessage& parsed,
                                     std::vector<std::uint32_t>& rules, bool& drop);
    std::vector<std::uint8_t> finish(const std::vector<std::uint8_t>& query, const DnsMessage& q,
                                     const std::vector<std::uint32_t>& rules, std::vector<std::uint8_t> reply);

    mutable std::mutex policy_mutex_;
    std::shared_ptr<const Policy> policy_;
    std::vector<DnsUpstream> upstreams_;
    Hooks hooks_;
    DnsTarget target_;
    UniqueFd udp4_, udp6_, tcp4_, tcp6_;
    std::map<std::uint16_t, std::unique_ptr<Pending>> by_id_;  // pending queries by upstream id
    std::vector<UniqueFd> upstream_socks_;  // one connected socket per upstream
    std::mutex serve_mutex_;     // held by the loop while it handles this proxy
    std::uint64_t loop_id_ = 0;  // its key in the loop
    std::mutex tcp_mutex_;
    struct TcpClient {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    std::vector<TcpClient> tcp_threads_;
    std::vector<int> tcp_fds_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> answered_{0}, refused_{0}, malformed_{0}, failed_{0};
};

}  // namespace mcpwarden
