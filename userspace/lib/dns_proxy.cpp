// SPDX-License-Identifier: Apache-2.0
#include "dns_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <fstream>
#include <map>
#include <random>
#include <unordered_map>
#include <sstream>

#include <spdlog/spdlog.h>

#include "error.h"
#include "host_match.h"

namespace mcpwarden {
namespace {

constexpr std::size_t kResolverStack = 256 * 1024;  // its loop, parsing, hooks and logging

using Clock = std::chrono::steady_clock;
constexpr auto kUpstreamTimeout = std::chrono::milliseconds(2000);
constexpr size_t kMaxPending = 512;
constexpr size_t kMaxTcpClients = 32;

std::uint16_t random_id() {
    static thread_local std::mt19937 rng(std::random_device{}());
    return static_cast<std::uint16_t>(rng());
}

void set_id(std::vector<std::uint8_t>& msg, std::uint16_t id) {
    if (msg.size() >= 2) {
        msg[0] = static_cast<std::uint8_t>(id >> 8);
        msg[1] = static_cast<std::uint8_t>(id);
    }
}

// Binds UDP and TCP to the same port on addr; returns the port or 0.
std::uint16_t bind_pair(int family, UniqueFd& udp, UniqueFd& tcp, std::uint16_t wanted = 0) {
    for (int attempt = 0; attempt < 20; ++attempt) {
        // A wanted port is tried once (an adopted sandbox's resolver address), then any port.
        std::uint16_t try_port = attempt == 0 ? wanted : 0;
        udp.reset(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        tcp.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!udp || !tcp) return 0;
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET) {
            auto* s = reinterpret_cast<sockaddr_in*>(&ss);
            s->sin_family = AF_INET;
            s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            s->sin_port = htons(try_port);
            len = sizeof *s;
        } else {
            auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
            s->sin6_family = AF_INET6;
            s->sin6_addr = in6addr_loopback;
            s->sin6_port = htons(try_port);
            int one = 1;
            ::setsockopt(udp.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            ::setsockopt(tcp.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
            len = sizeof *s;
        }
        if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
            if (try_port) continue;
            return 0;
        }
        socklen_t got = len;
        ::getsockname(udp.get(), reinterpret_cast<sockaddr*>(&ss), &got);
        std::uint16_t port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                                     : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        int one = 1;
        ::setsockopt(tcp.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(tcp.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 && ::listen(tcp.get(), 64) == 0) return port;
    }
    return 0;
}

bool read_exact(int fd, void* buf, size_t n) {
    auto* p = static_cast<std::uint8_t*>(buf);
    while (n > 0) {
        ssize_t r = ::read(fd, p, n);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return false;
        }
        p += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

bool write_framed(int fd, const std::vector<std::uint8_t>& msg) {
    std::vector<std::uint8_t> out{static_cast<std::uint8_t>(msg.size() >> 8), static_cast<std::uint8_t>(msg.size())};
    out.insert(out.end(), msg.begin(), msg.end());
    return write_all(fd, out.data(), out.size());
}

}  // namespace

struct DnsProxy::Pending {
    int client_fd;
    sockaddr_storage client{};
    socklen_t client_len = 0;
    std::vector<std::uint8_t> query;  // as the client sent it
    DnsMessage parsed;
    std::vector<std::uint32_t> rules;
    std::uint16_t upstream_id = 0;
    size_t upstream_index = 0;
    Clock::time_point deadline;
};

DnsUpstream parse_upstream(const std::string& text) {
    DnsUpstream u;
    u.text = text;
    std::string host = text;
    int port = 53;
    if (!text.empty() && text[0] == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) throw Error(ErrorKind::policy_invalid, "dns upstream '" + text + "': missing ]");
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') throw Error(ErrorKind::policy_invalid, "dns upstream '" + text + "': expected :PORT");
            port = std::atoi(text.c_str() + close + 2);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        host = text.substr(0, text.find(':'));
        port = std::atoi(text.c_str() + text.find(':') + 1);
    }
    if (port < 1 || port > 65535) throw Error(ErrorKind::policy_invalid, "dns upstream '" + text + "': bad port");
    auto* v4 = reinterpret_cast<sockaddr_in*>(&u.addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&u.addr);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(port));
        u.len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(port));
        u.len = sizeof *v6;
    } else {
        throw Error(ErrorKind::policy_invalid, "dns upstream '" + text + "' is not an IP address (with an optional :port)");
    }
    return u;
}

std::vector<DnsUpstream> dns_upstreams(const Dns& dns) {
    std::vector<DnsUpstream> out;
    for (const auto& u : dns.upstream) out.push_back(parse_upstream(u));
    if (!out.empty()) return out;
    std::ifstream in("/etc/resolv.conf");
    for (std::string line; std::getline(in, line);) {
        std::istringstream ss(line);
        std::string word, addr;
        if (ss >> word >> addr && word == "nameserver") {
            try {
                out.push_back(parse_upstream(addr.find(':') != std::string::npos && addr[0] != '[' ? "[" + addr + "]" : addr));
            } catch (const Error&) {
            }
        }
    }
    return out;
}

std::vector<std::uint32_t> DnsProxy::rules_for(const Policy& policy, const std::string& name) {
    std::vector<std::uint32_t> out;
    for (size_t i = 0; i < policy.egress.allow.size(); ++i) {
        const auto& r = policy.egress.allow[i];
        if (!r.host.empty() && host_matches(r.host, name)) out.push_back(static_cast<std::uint32_t>(i));
    }
    return out;
}

DnsProxy::DnsProxy(const Policy& policy, std::vector<DnsUpstream> upstreams, Hooks hooks, DnsTarget wanted,
                   int netns_fd)
    : policy_(std::make_shared<const Policy>(policy)), upstreams_(std::move(upstreams)), hooks_(std::move(hooks)) {
    std::uint16_t p4 = 0, p6 = 0;
    int err = 0;
    auto bind_all = [&] {
        p4 = bind_pair(AF_INET, udp4_, tcp4_, wanted.port4);
        if (!p4) err = errno;
        else p6 = bind_pair(AF_INET6, udp6_, tcp6_, wanted.port6);
    };
    std::string where;
    if (netns_fd < 0) {
        bind_all();
    } else {
        // The sockets are made in the sandbox's network namespace, on a thread of their own
        // (setns changes only the calling thread's namespace), and stay in it: the loopback
        // the kernel redirects the sandbox's port-53 flows to is that namespace's.
        bool entered = false;
        std::thread([&] {
            if (::setns(netns_fd, CLONE_NEWNET) != 0) {
                err = errno;
                return;
            }
            entered = true;
            bind_all();
        }).join();
        if (!entered)
            throw Error(ErrorKind::sandbox_unavailable,
                        errno_text("cannot enter the network namespace of the cgroup's processes for its resolver", err));
        where = " in the network namespace of the cgroup's processes";
    }
    if (!p4) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot bind the DNS resolver on 127.0.0.1" + where, err));
    if (!p6) {
        udp6_.reset();
        tcp6_.reset();
    }
    for (int fd : {udp4_.get(), udp6_.get()}) {
        int size = 4 << 20;  // bursts of queries must not be dropped by the socket
        if (fd >= 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    for (const auto& u : upstreams_) {
        UniqueFd fd(::socket(u.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        int size = 4 << 20;
        if (fd) ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (fd && ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&u.addr), u.len) != 0) fd.reset();
        upstream_socks_.push_back(std::move(fd));
    }
    target_.ip4 = htonl(INADDR_LOOPBACK);
    target_.port4 = p4;
    target_.port6 = p6;
    ResolverLoop::get().add(this);
}

DnsProxy::~DnsProxy() { stop(); }

void DnsProxy::set_policy(const Policy& policy) {
    auto next = std::make_shared<const Policy>(policy);
    std::lock_guard<std::mutex> lock(policy_mutex_);
    policy_ = std::move(next);
}

std::shared_ptr<const Policy> DnsProxy::policy() const {
    std::lock_guard<std::mutex> lock(policy_mutex_);
    return policy_;
}

void DnsProxy::stop() {
    if (stopping_.exchange(true)) return;
    ResolverLoop::get().remove(this);  // from here on the loop never touches this proxy
    std::vector<TcpClient> threads;
    {
        std::lock_guard<std::mutex> lock(tcp_mutex_);
        for (int fd : tcp_fds_) ::shutdown(fd, SHUT_RDWR);
        threads.swap(tcp_threads_);
    }
    for (auto& t : threads) t.thread.join();
    by_id_.clear();
}

DnsProxy::Stats DnsProxy::stats() const { return {answered_, refused_, malformed_, failed_}; }

std::vector<std::uint8_t> DnsProxy::screen(const std::vector<std::uint8_t>& query, DnsMessage& parsed,
                                           std::vector<std::uint32_t>& rules, bool& drop) {
    drop = false;
    std::string why;
    auto m = parse_dns(query, &why);
    if (!m || m->is_response() || m->questions.size() != 1 || m->opcode() != 0) {
        ++malformed_;
        drop = true;  // not a query we can answer: dropped and counted, never forwarded
        spdlog::debug("dropped a malformed DNS query: {}", why.empty() ? "not a single-question query" : why);
        return {};
    }
    parsed = std::move(*m);
    const auto& q = parsed.questions[0];
    rules = rules_for(*policy(), q.name);
    if (rules.empty()) {
        ++refused_;
        if (hooks_.refused) hooks_.refused(q.name, q.qtype);
        return dns_error_reply(query, dns::kRcodeRefused);
    }
    return {};
}

std::vector<std::uint8_t> DnsProxy::finish(const std::vector<std::uint8_t>& query, const DnsMessage& q,
                                           const std::vector<std::uint32_t>& rules, std::vector<std::uint8_t> reply) {
    std::string why;
    auto answer = parse_dns(reply, &why);
    if (!answer || !answer->is_response() || answer->questions.size() != 1 ||
        answer->questions[0].name != q.questions[0].name || answer->questions[0].qtype != q.questions[0].qtype) {
        ++failed_;
        spdlog::debug("upstream answer for {} rejected: {}", q.questions[0].name, why.empty() ? "question mismatch" : why);
        return dns_error_reply(query, dns::kRcodeServfail);
    }
    auto addrs = dns_addresses_for(*answer, q.questions[0].name);
    // The kernel allow-list learns the addresses before the application sees them.
    if (!addrs.empty() && hooks_.admit && !hooks_.admit(q.questions[0].name, rules, addrs)) {
        ++failed_;
        return dns_error_reply(query, dns::kRcodeServfail);
    }
    ++answered_;
    set_id(reply, q.id);
    return reply;
}

void DnsProxy::on_query(int fd, const std::vector<std::uint8_t>& query, const sockaddr_storage& from, socklen_t fromlen) {
    DnsMessage q;
    std::vector<std::uint32_t> rules;
    bool drop;
    auto reply = screen(query, q, rules, drop);
    if (drop) return;
    if (!reply.empty()) {
        ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<const sockaddr*>(&from), fromlen);
        return;
    }
    if (upstreams_.empty() || by_id_.size() >= kMaxPending) {
        ++failed_;
        reply = dns_error_reply(query, dns::kRcodeServfail);
        ::sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<const sockaddr*>(&from), fromlen);
        return;
    }
    auto p = std::make_unique<Pending>();
    p->client_fd = fd;
    p->client = from;
    p->client_len = fromlen;
    p->query = query;
    p->parsed = std::move(q);
    p->rules = std::move(rules);
    on_upstream(*p);
    std::uint16_t id = p->upstream_id;
    by_id_[id] = std::move(p);
}

// Sends (or re-sends to the next upstream) the pending query, under a fresh random id that no
// other pending query holds; the reply is matched by id on that upstream's socket.
void DnsProxy::on_upstream(Pending& p) {
    size_t index = p.upstream_index % upstreams_.size();
    do {
        p.upstream_id = random_id();
    } while (by_id_.count(p.upstream_id));
    std::vector<std::uint8_t> out = p.query;
    set_id(out, p.upstream_id);
    int fd = upstream_socks_[index].get();
    if (fd >= 0) (void)::send(fd, out.data(), out.size(), 0);
    p.deadline = Clock::now() + kUpstreamTimeout;
}

std::vector<int> DnsProxy::loop_fds() const {
    std::vector<int> fds{udp4_.get(), udp6_.get(), tcp4_.get(), tcp6_.get()};
    for (const auto& u : upstream_socks_) fds.push_back(u.get());
    return fds;
}

void DnsProxy::on_ready(size_t slot, std::span<std::uint8_t> buf) {
    auto fds = loop_fds();
    if (slot >= fds.size() || fds[slot] < 0) return;
    int fd = fds[slot];
    if (slot >= 4) {
        // Answers from upstream, matched to pending queries by id.
        for (int k = 0; k < 256; ++k) {
            ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
            if (r < 0) break;
            if (r < 12) continue;
            auto it = by_id_.find(static_cast<std::uint16_t>((buf[0] << 8) | buf[1]));
            if (it == by_id_.end()) continue;  // late, spoofed or already answered
            auto p = std::move(it->second);
            by_id_.erase(it);
            auto reply = finish(p->query, p->parsed, p->rules, std::vector<std::uint8_t>(buf.begin(), buf.begin() + r));
            ::sendto(p->client_fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&p->client), p->client_len);
        }
        return;
    }
    if (fd == tcp4_.get() || fd == tcp6_.get()) {
        int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        std::lock_guard<std::mutex> lock(tcp_mutex_);
        // Reap the connections that ended.
        for (size_t t = 0; t < tcp_threads_.size();) {
            if (*tcp_threads_[t].done) {
                tcp_threads_[t].thread.join();
                tcp_threads_.erase(tcp_threads_.begin() + static_cast<long>(t));
            } else {
                ++t;
            }
        }
        if (tcp_threads_.size() >= kMaxTcpClients) {
            ::close(c);
            return;
        }
        tcp_fds_.push_back(c);
        auto done = std::make_shared<std::atomic<bool>>(false);
        tcp_threads_.push_back({std::thread([this, c, done] {
                                    serve_tcp(c);
                                    *done = true;
                                }),
                                done});
        return;
    }
    for (int k = 0; k < 256; ++k) {
        sockaddr_storage from{};
        socklen_t fromlen = sizeof from;
        ssize_t r = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fromlen);
        if (r < 0) break;
        on_query(fd, std::vector<std::uint8_t>(buf.begin(), buf.begin() + r), from, fromlen);
    }
}

void DnsProxy::on_tick() {
    auto now = Clock::now();
    // Queries upstream did not answer in time: the next upstream, or SERVFAIL.
    std::vector<std::uint16_t> late;
    for (auto& [id, p] : by_id_) {
        if (now > p->deadline) late.push_back(id);
    }
    for (auto id : late) {
        auto p = std::move(by_id_[id]);
        by_id_.erase(id);
        if (++p->upstream_index < upstreams_.size()) {
            on_upstream(*p);
            std::uint16_t nid = p->upstream_id;
            by_id_[nid] = std::move(p);
        } else {
            ++failed_;
            auto reply = dns_error_reply(p->query, dns::kRcodeServfail);
            ::sendto(p->client_fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&p->client), p->client_len);
        }
    }
    if (hooks_.tick) hooks_.tick();
}

ResolverLoop& ResolverLoop::get() {
    static auto* loop = new ResolverLoop();  // never destroyed: its thread ends with the last proxy
    return *loop;
}

void ResolverLoop::add(DnsProxy* proxy) {
    std::lock_guard<std::mutex> life(lifecycle_);
    if (!running_) {
        if (!epoll_) {
            epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
            wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
            if (!epoll_ || !wake_) throw Error(ErrorKind::internal, errno_text("cannot set up the resolver loop", errno));
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u64 = 0;
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
        }
        quit_ = false;
        pthread_attr_t attr;
        ::pthread_attr_init(&attr);
        ::pthread_attr_setstacksize(&attr, kResolverStack);
        int rc = ::pthread_create(&thread_, &attr, [](void* self) -> void* {
            static_cast<ResolverLoop*>(self)->run();
            return nullptr;
        }, this);
        ::pthread_attr_destroy(&attr);
        if (rc != 0) throw Error(ErrorKind::internal, errno_text("cannot start the resolver thread", rc));
        running_ = true;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    std::uint64_t id = next_id_++;
    auto fds = proxy->loop_fds();
    for (size_t slot = 0; slot < fds.size(); ++slot) {
        if (fds[slot] < 0) continue;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = id << 8 | slot;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fds[slot], &ev) != 0) {
            int err = errno;
            for (size_t s = 0; s < slot; ++s) {
                if (fds[s] >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fds[s], nullptr);
            }
            throw Error(ErrorKind::internal, errno_text("cannot watch the resolver's sockets", err));
        }
    }
    proxy->loop_id_ = id;
    proxies_[id] = proxy;
}

void ResolverLoop::remove(DnsProxy* proxy) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!proxies_.erase(proxy->loop_id_)) return;
        for (int fd : proxy->loop_fds()) {
            if (fd >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        }
    }
    // The loop may be handling this proxy right now: wait until it is done.
    { std::lock_guard<std::mutex> wait(proxy->serve_mutex_); }
    std::lock_guard<std::mutex> life(lifecycle_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!proxies_.empty() || !running_ || ::pthread_equal(thread_, ::pthread_self())) return;
    }
    // The last proxy: the thread ends (a process keeps no resolver thread while it has no sandbox).
    quit_ = true;
    std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    ::pthread_join(thread_, nullptr);
    running_ = false;
}

// Runs fn on the registered proxy with this id, holding its serve lock, if it is still there.
template <typename Fn>
void ResolverLoop::with_proxy(std::uint64_t id, Fn&& fn) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto it = proxies_.find(id);
    if (it == proxies_.end()) return;
    DnsProxy* p = it->second;
    std::lock_guard<std::mutex> serving(p->serve_mutex_);
    lock.unlock();
    fn(*p);
}

void ResolverLoop::run() {
    // One receive buffer for every sandbox's queries; left uninitialised until used.
    std::unique_ptr<std::uint8_t[]> storage(new std::uint8_t[65536]);
    std::span<std::uint8_t> buf(storage.get(), 65536);
    auto last_tick = Clock::now();
    epoll_event events[64];
    while (!quit_) {
        int n = ::epoll_wait(epoll_.get(), events, 64, 100);
        if (n < 0 && errno != EINTR) {
            spdlog::error("resolver loop: epoll_wait: {}", std::strerror(errno));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        for (int i = 0; i < n; ++i) {
            std::uint64_t data = events[i].data.u64;
            if (data == 0) {
                std::uint64_t v;
                (void)!::read(wake_.get(), &v, sizeof v);
                continue;
            }
            with_proxy(data >> 8, [&](DnsProxy& p) { p.on_ready(data & 0xff, buf); });
        }
        auto now = Clock::now();
        if (now - last_tick >= std::chrono::milliseconds(100)) {
            last_tick = now;
            std::vector<std::uint64_t> ids;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                ids.reserve(proxies_.size());
                for (const auto& [id, p] : proxies_) ids.push_back(id);
            }
            for (auto id : ids) with_proxy(id, [](DnsProxy& p) { p.on_tick(); });
        }
    }
}

std::vector<std::uint8_t> DnsProxy::resolve_tcp(const std::vector<std::uint8_t>& query) {
    for (const auto& u : upstreams_) {
        UniqueFd s(::socket(u.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        timeval tv{2, 0};
        ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&u.addr), u.len) != 0) continue;
        if (!write_framed(s.get(), query)) continue;
        std::uint8_t len[2];
        if (!read_exact(s.get(), len, 2)) continue;
        std::vector<std::uint8_t> reply((len[0] << 8) | len[1]);
        if (!read_exact(s.get(), reply.data(), reply.size())) continue;
        return reply;
    }
    return {};
}

void DnsProxy::serve_tcp(int fd) {
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stopping_) {
        std::uint8_t len[2];
        if (!read_exact(fd, len, 2)) break;
        std::vector<std::uint8_t> query((len[0] << 8) | len[1]);
        if (query.empty() || !read_exact(fd, query.data(), query.size())) break;
        DnsMessage q;
        std::vector<std::uint32_t> rules;
        bool drop;
        auto reply = screen(query, q, rules, drop);
        if (drop) break;
        if (reply.empty()) {
            std::vector<std::uint8_t> out = query;
            set_id(out, random_id());
            auto upstream = resolve_tcp(out);
            if (upstream.size() >= 2) {
                set_id(upstream, q.id);  // finish() checks the question, not the id, on TCP
                reply = finish(query, q, rules, upstream);
            } else {
                ++failed_;
                reply = dns_error_reply(query, dns::kRcodeServfail);
            }
        }
        if (!write_framed(fd, reply)) break;
    }
    std::lock_guard<std::mutex> lock(tcp_mutex_);
    ::close(fd);
    tcp_fds_.erase(std::remove(tcp_fds_.begin(), tcp_fds_.end(), fd), tcp_fds_.end());
}

}  // namespace mcpwarden
