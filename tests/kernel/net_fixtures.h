// SPDX-License-Identifier: Apache-2.0
// Network fixtures of the kernel tests (egress, DNS, bypass): loopback listeners, the dnsstub
// helper, network namespaces of the test's own, and sandboxed shell scripts with their audit.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace netfix {

using harness::command;
using harness::program;
using harness::Result;
using harness::state_dir;
using harness::warden;

// A TCP listener on a loopback address that counts accepted connections.
class TcpListener {
public:
    explicit TcpListener(const char* address, int family = AF_INET, std::uint16_t port = 0) {
        fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        ::setsockopt(fd_, IPPROTO_TCP, 23 /* TCP_FASTOPEN */, &one, sizeof one);
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET) {
            auto* s = reinterpret_cast<sockaddr_in*>(&ss);
            s->sin_family = AF_INET;
            s->sin_port = htons(port);
            inet_pton(AF_INET, address, &s->sin_addr);
            len = sizeof *s;
        } else {
            auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
            s->sin6_family = AF_INET6;
            s->sin6_port = htons(port);
            inet_pton(AF_INET6, address, &s->sin6_addr);
            len = sizeof *s;
        }
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len), 0) << address;
        EXPECT_EQ(::listen(fd_, 64), 0);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
        port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                        : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{fd_, POLLIN, 0};
                if (::poll(&p, 1, 50) > 0) {
                    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
                    if (c >= 0) {
                        ++accepted_;
                        const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        (void)!::write(c, reply, sizeof reply - 1);
                        ::close(c);
                    }
                }
            }
        });
    }
    ~TcpListener() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::string port() const { return std::to_string(port_); }
    int accepted() const { return accepted_; }

private:
    int fd_;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread thread_;
};

// A UDP socket on a loopback address; counts datagrams that arrived.
class UdpReceiver {
public:
    explicit UdpReceiver(const char* address) {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        sockaddr_in s{};
        s.sin_family = AF_INET;
        inet_pton(AF_INET, address, &s.sin_addr);
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&s), sizeof s), 0);
        socklen_t len = sizeof s;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&s), &len);
        port_ = ntohs(s.sin_port);
    }
    ~UdpReceiver() { ::close(fd_); }
    std::string port() const { return std::to_string(port_); }
    int received() {
        char buf[256];
        while (::recv(fd_, buf, sizeof buf, 0) > 0) ++count_;
        return count_;
    }

private:
    int fd_;
    std::uint16_t port_ = 0;
    int count_ = 0;
};

// A dnsstub process (tests/helpers/dnsstub) on ADDR:PORT, killed at the end of the test.
class DnsStub {
public:
    DnsStub(const std::string& addr, int port, int ttl, std::vector<std::string> records) {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe");
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            std::vector<std::string> argv{std::string(MCPWARDEN_BIN_DIR) + "/dnsstub", addr, std::to_string(port), std::to_string(ttl)};
            argv.insert(argv.end(), records.begin(), records.end());
            std::vector<char*> args;
            for (auto& a : argv) args.push_back(a.data());
            args.push_back(nullptr);
            ::execv(args[0], args.data());
            ::_exit(127);
        }
        ::close(out[1]);
        char buf[16] = {};
        EXPECT_GT(::read(out[0], buf, sizeof buf - 1), 0) << "dnsstub did not start";
        ::close(out[0]);
    }
    ~DnsStub() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }

private:
    pid_t pid_;
};

// A network namespace of the test's own, deleted on every path out of the test.
struct NetNs {
    std::string name;
    explicit NetNs(const std::string& prefix) : name(prefix + std::to_string(::getpid())) {
        command({"ip", "netns", "del", name});
        EXPECT_EQ(command({"ip", "netns", "add", name}).exit_code, 0);
        command({"ip", "-n", name, "link", "set", "lo", "up"});
    }
    ~NetNs() { command({"ip", "netns", "del", name}); }
    // nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup and bpf mounts.
    std::vector<std::string> enter() const { return {"nsenter", "--net=/run/netns/" + name}; }
    std::string path() const { return "/run/netns/" + name; }
    // Runs `fn` on a thread inside the namespace (sockets it makes stay there).
    template <typename Fn>
    void inside(Fn&& fn) const {
        std::thread([&] {
            int fd = ::open(path().c_str(), O_RDONLY | O_CLOEXEC);
            bool in = fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
            if (fd >= 0) ::close(fd);
            EXPECT_TRUE(in) << "cannot enter " << path();
            if (in) fn();
        }).join();
    }
    // The ports of UDP sockets bound to 127.0.0.1 in the namespace (/proc/thread-self/net/udp
    // of a thread inside: no ss needed, the VM's guest has none).
    std::vector<int> udp_loopback_ports() const {
        std::vector<int> out;
        inside([&] {
            std::ifstream udp("/proc/thread-self/net/udp");
            std::string line;
            std::getline(udp, line);  // the header
            while (std::getline(udp, line)) {
                std::istringstream words(line);
                std::string slot, local;
                words >> slot >> local;  // "0100007F:PORT" (hex)
                if (local.rfind("0100007F:", 0) == 0) out.push_back(std::stoi(local.substr(9), nullptr, 16));
            }
        });
        return out;
    }
    std::uint64_t inode() const {
        struct stat st {};
        ::stat(path().c_str(), &st);
        return st.st_ino;
    }
};

inline std::string write_policy(const std::string& name, const std::string& body) {
    std::string path = state_dir() + "/" + name + ".yaml";
    std::ofstream(path) << "name: " << name << "\n" << body;
    return path;
}

inline std::vector<nlohmann::json> read_audit(const std::string& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    }
    return out;
}

inline std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream ss(text);
    for (std::string line; std::getline(ss, line);) lines.push_back(line);
    return lines;
}

struct Sandboxed {
    Result result;
    std::vector<nlohmann::json> audit;
    std::vector<std::string> lines;
};

// Runs a shell script in a sandbox under the policy; netprobe is $NP in the script. `prefix`
// is a command the run starts under (e.g. nsenter into a namespace of the test).
inline Sandboxed sandboxed(const std::string& policy, const std::string& script,
                           const std::vector<std::string>& extra = {},
                           const std::vector<std::string>& prefix = {}, const harness::Options& opts = {}) {
    std::string audit = state_dir() + "/audit-" + std::to_string(::getpid()) + ".jsonl";
    ::unlink(audit.c_str());
    std::vector<std::string> args{"run", "--policy", policy, "--audit", audit};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--env", "NP=" + program("netprobe"), "--", "sh", "-c", script});
    Sandboxed s;
    if (prefix.empty()) {
        s.result = warden(args, opts);
    } else {
        std::vector<std::string> argv = prefix;
        argv.insert(argv.end(), {MCPWARDEN_BIN, "run", "--state-dir", state_dir()});
        argv.insert(argv.end(), args.begin() + 1, args.end());
        s.result = command(argv, opts);
    }
    s.audit = read_audit(audit);
    ::unlink(audit.c_str());
    s.lines = split_lines(s.result.out);
    return s;
}

inline bool has_event(const std::vector<nlohmann::json>& audit, const std::string& address, int port,
                      const std::string& hook = "") {
    for (const auto& e : audit) {
        if (e.value("address", "") == address && e.value("port", -1) == port &&
            (hook.empty() || e.value("hook", "") == hook))
            return true;
    }
    return false;
}

}  // namespace netfix
