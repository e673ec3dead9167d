// SPDX-License-Identifier: Apache-2.0
#include "egress_extension.h"

#include "error.h"
#include "fd.h"
#include "safe_output.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace mcpwarden {
namespace {

std::int64_t clock_ns(clockid_t id) {
    struct timespec ts {};
    ::clock_gettime(id, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string iso_time(std::int64_t real_ns) {
    time_t secs = static_cast<time_t>(real_ns / 1000000000);
    struct tm tm {};
    ::gmtime_r(&secs, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[80];
    std::snprintf(out, sizeof out, "%s.%06lldZ", buf, static_cast<long long>((real_ns % 1000000000) / 1000));
    return out;
}

const char* hook_name(int hook) {
    switch (hook) {
        case MW_HOOK_SOCK_CREATE: return "sock_create";
        case MW_HOOK_CONNECT4: return "connect4";
        case MW_HOOK_CONNECT6: return "connect6";
        case MW_HOOK_SENDMSG4: return "sendmsg4";
        case MW_HOOK_SENDMSG6: return "sendmsg6";
        case MW_HOOK_SKB_EGRESS: return "skb_egress";
        case MW_HOOK_DNS: return "dns";
    }
    return "unknown";
}

std::string protocol_name(int p) {
    switch (p) {
        case 1: return "icmp";
        case 6: return "tcp";
        case 17: return "udp";
        case 58: return "icmpv6";
        case 132: return "sctp";
        case 136: return "udplite";
        case 255: return "raw";
    }
    return std::to_string(p);
}

std::string family_name(int af) {
    switch (af) {
        case AF_INET: return "AF_INET";
        case AF_INET6: return "AF_INET6";
    }
    return std::to_string(af);
}

std::string socktype_name(int t) {
    switch (t) {
        case SOCK_STREAM: return "SOCK_STREAM";
        case SOCK_DGRAM: return "SOCK_DGRAM";
        case SOCK_RAW: return "SOCK_RAW";
    }
    return std::to_string(t);
}

}  // namespace

namespace {

// Audit lines to a file opened once by open_output (no path is opened again later).
class FdSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit FdSink(UniqueFd fd) : fd_(std::move(fd)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t buf;
        formatter_->format(msg, buf);
        (void)write_all(fd_.get(), buf.data(), buf.size());
    }
    void flush_() override {}

private:
    UniqueFd fd_;
};

}  // namespace

std::shared_ptr<spdlog::logger> make_audit_logger(const std::string& path) {
    std::shared_ptr<spdlog::logger> logger;
    if (path.empty()) {
        logger = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        // On a stderr the server shares, the prefix tells mcpwarden's audit from the server's
        // own logs (a server could print lines that look like audit JSON).
        logger->set_pattern(std::string(kAuditPrefix) + "%v");
    } else {
        logger = std::make_shared<spdlog::logger>("audit", std::make_shared<FdSink>(open_output(path, OutputMode::append, "--audit")));
        logger->set_pattern("%v");
    }
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
    return logger;
}

EgressExtension::EgressExtension(const Policy& policy, bool audit_only, std::shared_ptr<spdlog::logger> audit)
    : policy_(std::make_shared<const Policy>(policy)),
      audit_only_flag_(audit_only),
      audit_only_(audit_only || policy.egress.audit_only),
      audit_(std::move(audit)),
      compiled_(std::make_shared<const CompiledEgress>()) {
    boot_to_real_ns_ = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME);
}

EgressExtension::~EgressExtension() {
    if (dns_) dns_->stop();
    if (loop_ && events_fd_ >= 0) loop_->remove(events_fd_);
    if (enforcer_) {
        std::lock_guard<std::mutex> lock(learned_mutex_);
        for (auto& [k, l] : learned_) enforcer_->drop_learned(l.entry);
    }
}

std::shared_ptr<const Policy> EgressExtension::policy() const {
    std::lock_guard<std::mutex> lock(policy_mutex_);
    return policy_;
}

std::shared_ptr<const CompiledEgress> EgressExtension::compiled() const {
    std::lock_guard<std::mutex> lock(policy_mutex_);
    return compiled_;
}

void EgressExtension::audit_line(nlohmann::json j) {
    if (!audit_ || !audit_admit(j.value("event", "audit"))) return;
    j["sandbox"] = label();
    j["policy"] = policy()->name;
    audit_->info(j.dump());
}

void EgressExtension::audit_event(const mw_event& e) {
    ++events_seen_;
    // A flood repeats one destination: the refusal list (for the MCP layer's message) is only
    // looked at when the destination changed, and the line only made when it is written.
    bool same_destination = std::memcmp(last_refused_.addr, e.addr, sizeof e.addr) == 0 &&
                            last_refused_.port == e.port && last_refused_.protocol == e.protocol &&
                            last_refused_.family == e.family && events_seen_ > 1;
    last_refused_ = e;
    bool admit = audit_ && audit_admit(e.hook == MW_HOOK_SOCK_CREATE ? "socket_denied" : "egress_denied");
    if (same_destination && !admit) return;
    auto j = event_json(e);
    if (!same_destination && j.contains("address")) {
        note_refusal(denied_connection(j, e.rule));
    }
    if (admit) audit_->info(j.dump());
}

bool EgressExtension::audit_admit(const std::string& kind) {
    auto now = std::chrono::steady_clock::now();
    std::map<std::string, std::uint64_t> summary;
    {
        std::lock_guard<std::mutex> lock(audit_mutex_);
        // A token bucket: kAuditBurst lines at once, kAuditPerSecond a second after that.
        auto since = std::chrono::duration<double>(now - audit_refilled_).count();
        audit_tokens_ = std::min<double>(kAuditBurst, audit_tokens_ + since * kAuditPerSecond);
        audit_refilled_ = now;
        if (audit_tokens_ >= 1) {
            audit_tokens_ -= 1;
            return true;
        }
        if (audit_suppressed_window_.empty()) audit_window_start_ = now;
        ++audit_suppressed_window_[kind];
        ++audit_suppressed_total_;
        if (now - audit_window_start_ < std::chrono::seconds(1)) return false;
        summary = std::exchange(audit_suppressed_window_, {});
        audit_summarised_ = now;
    }
    audit_summary(summary);
    return false;
}

void EgressExtension::poll_kernel_suppressed(std::chrono::steady_clock::time_point now) {
    if (now - kernel_polled_ < std::chrono::seconds(1)) return;
    // bind and unbind swap enforcer_ under this lock; a reload holds it for long: try again at
    // the next tick rather than wait.
    std::unique_lock<std::mutex> lock(learned_mutex_, std::try_to_lock);
    if (!lock || !enforcer_) return;
    kernel_polled_ = now;
    auto c = enforcer_->counters();
    lock.unlock();
    audit_kernel_suppressed(c, now, false);
}

void EgressExtension::audit_kernel_suppressed(const EgressCounters& c, std::chrono::steady_clock::time_point now,
                                              bool final) {
    std::map<std::string, std::uint64_t> summary;
    {
        std::lock_guard<std::mutex> lock(audit_mutex_);
        bool was_empty = audit_suppressed_window_.empty();
        auto add = [&](const char* kind, std::uint64_t counted, std::uint64_t& summarised) {
            if (counted <= summarised) return;
            audit_suppressed_window_[kind] += counted - summarised;
            audit_suppressed_total_ += counted - summarised;
            summarised = counted;
        };
        add("egress_denied", c.suppressed, kernel_summarised_);
        add("socket_denied", c.suppressed_socket, kernel_summarised_socket_);
        // These were left out since the last look, a second ago or more: the window is as old as
        // the last summary, so the next one is due a second after that.
        if (was_empty && !audit_suppressed_window_.empty()) audit_window_start_ = audit_summarised_;
        if (audit_suppressed_window_.empty() || (!final && now - audit_window_start_ < std::chrono::seconds(1)))
            return;
        summary = std::exchange(audit_suppressed_window_, {});
        audit_summarised_ = now;
    }
    audit_summary(summary);
}

void EgressExtension::audit_summary(const std::map<std::string, std::uint64_t>& by_event) {
    if (!audit_ || by_event.empty()) return;
    std::uint64_t count = 0;
    for (const auto& [k, n] : by_event) count += n;
    nlohmann::json j = {{"time", iso_time(clock_ns(CLOCK_REALTIME))},
                        {"event", "audit_suppressed"},
                        {"suppressed", count},
                        {"by_event", by_event},
                        {"sandbox", label()},
                        {"policy", policy()->name},
                        {"note", "audit lines over the rate limit; the report's and metrics' counts are exact"}};
    audit_->info(j.dump());
}

bool EgressExtension::admit(const std::string& name, const std::vector<std::uint32_t>& screened,
                            const std::vector<DnsAddress>& addresses) {
    std::lock_guard<std::mutex> lock(learned_mutex_);
    auto pol = policy();
    auto id = compiled()->policy_id;
    // The query was screened under the policy of its arrival; a reload since then decides.
    std::vector<std::uint32_t> rules = DnsProxy::rules_for(*pol, name);
    if (rules.empty()) return false;
    (void)screened;
    auto now = std::chrono::steady_clock::now();
    auto floor = pol->dns.min_ttl.value_or(Dns::kDefaultMinTtl);
    auto cap = pol->dns.max_learned.value_or(Dns::kDefaultMaxLearned);
    for (const auto& a : addresses) {
        Cidr c;
        c.family = a.address.size() == 4 ? AF_INET : AF_INET6;
        c.prefix = c.family == AF_INET ? 32 : 128;
        std::copy(a.address.begin(), a.address.end(), c.addr.begin());
        // ::ffff:a.b.c.d in an AAAA answer is IPv4 to the kernel.
        if (auto norm = parse_address(c.to_string())) c = *norm;
        std::string key(reinterpret_cast<const char*>(c.addr.data()), c.family == AF_INET ? 4 : 16);
        if (auto range = reserved_range_of(c); range && !pol->dns.allow_reserved_answers) {
            // DNS rebinding: an allowed name must not open loopback, private or metadata ranges.
            ++answers_blocked_;
            audit_line({{"event", "dns_answer_blocked"}, {"name", name}, {"address", c.to_string()},
                        {"rule", "answer in reserved range " + *range + " (dns.allow_reserved_answers is false)"}});
            continue;
        }
        auto it = learned_.find(key);
        if (it == learned_.end() && learned_.size() >= cap) {
            audit_line({{"event", "dns_learned_cap"}, {"name", name}, {"address", c.to_string()},
                        {"rule", "the sandbox already holds " + std::to_string(cap) + " learned addresses (dns.max_learned)"}});
            return false;  // fail closed: the answer is not released
        }
        auto ttl = std::max<std::chrono::milliseconds>(std::chrono::seconds(a.ttl), floor);
        if (it != learned_.end() && std::all_of(rules.begin(), rules.end(), [&](std::uint32_t r) {
                return std::find(it->second.rules.begin(), it->second.rules.end(), r) != it->second.rules.end();
            })) {
            // Already admitted for these rules: the entry stands, only its life is extended.
            it->second.expiry = std::max(it->second.expiry, now + ttl);
            it->second.names.insert(name);
            continue;
        }
        std::vector<std::uint32_t> all_rules = rules;
        if (it != learned_.end()) {
            for (auto r : it->second.rules) {
                if (std::find(all_rules.begin(), all_rules.end(), r) == all_rules.end()) all_rules.push_back(r);
            }
        }
        auto entry = compile_learned(pol->egress, id, c, all_rules, next_set_id_);
        try {
            enforcer_->put_learned(entry);
        } catch (const Error& e) {
            spdlog::error("cannot admit {} for {}: {}", c.to_string(), name, e.what());
            return false;
        }
        if (it != learned_.end()) {
            // Port sets of the entry it replaces go when the sandbox ends.
            for (auto& ps : it->second.entry.portsets) replaced_sets_.push_back(ps);
            it->second.entry = entry;
            it->second.rules = all_rules;
            it->second.expiry = std::max(it->second.expiry, now + ttl);
            it->second.names.insert(name);
        } else {
            learned_[key] = {entry, all_rules, name, now + ttl, {name}, c};
            next_expiry_ = std::min(next_expiry_, now + ttl);
            ++learned_total_;
        }
        auto [n, fresh] = names_.try_emplace(key, LearnedName{name, static_cast<std::uint64_t>(clock_ns(CLOCK_BOOTTIME))});
        if (!fresh) n->second.name = name;  // known since the first learning
    }
    return true;
}

// Addresses whose TTL ran out leave the allow-list, unless a connected UDP socket still uses
// them (TCP connections opened under them are not affected: the backstop checks only SYNs).
void EgressExtension::expire(std::chrono::steady_clock::time_point now) {
    // Runs on the process's one resolver thread, for every sandbox, ten times a second: it
    // must not wait out a reload of this sandbox (that holds the lock, for seconds with a large
    // policy), nor walk the learned addresses before the first of them is due.
    std::unique_lock<std::mutex> lock(learned_mutex_, std::try_to_lock);
    if (!lock || now < next_expiry_) return;
    next_expiry_ = std::chrono::steady_clock::time_point::max();
    for (auto it = learned_.begin(); it != learned_.end();) {
        if (it->second.expiry > now) {
            next_expiry_ = std::min(next_expiry_, it->second.expiry);
            ++it;
            continue;
        }
        enforcer_->drop_learned(it->second.entry);
        it = learned_.erase(it);
    }
}

DnsProxy::Hooks EgressExtension::dns_hooks() {
    DnsProxy::Hooks hooks;
    hooks.admit = [this](const std::string& name, const std::vector<std::uint32_t>& rules,
                         const std::vector<DnsAddress>& addrs) { return admit(name, rules, addrs); };
    hooks.refused = [this](const std::string& name, std::uint16_t qtype) {
        ++dns_refused_;
        note_refusal(refused_name(name));
        audit_line({{"event", "dns_refused"}, {"name", name}, {"qtype", qtype},
                    {"rule", "no host rule allows this name"}});
    };
    hooks.tick = [this] {
        auto now = std::chrono::steady_clock::now();
        expire(now);
        poll_kernel_suppressed(now);
    };
    return hooks;
}

void EgressExtension::before_spawn(Sandbox& sandbox) {
    bind(sandbox.cgroup().unified_fd(), sandbox.cgroup().unified_id(), sandbox.cgroup().name(), sandbox.loop());
    // A sandbox cgroup is ours and goes with the sandbox: it gets the backstops (not a cgroup
    // someone else made and `attach`ed, which outlives the attachment by design).
    enforcer_->attach_backstops(sandbox.cgroup().unified_fd());
}

void EgressExtension::bind(int cgroup_fd, std::uint64_t id, const std::string& name, EventLoop& loop) {
    sandbox_name_ = name;
    auto objects = BpfObjects::open();
    auto pol = policy();
    auto t0 = std::chrono::steady_clock::now();
    compiled_ = std::make_shared<const CompiledEgress>(compile_egress(pol->egress, id));
    auto t1 = std::chrono::steady_clock::now();
    dns_ = std::make_unique<DnsProxy>(*pol, dns_upstreams(pol->dns), dns_hooks(), DnsTarget{}, netns_fd_);
    auto enforcer = std::make_unique<CgroupEnforcer>(objects, cgroup_fd, id, *compiled_,
                                                     audit_only_, [this](const mw_event& e) { audit_event(e); },
                                                     sandbox_name_, dns_->target(), shared_events_);
    {
        std::lock_guard<std::mutex> lock(learned_mutex_);  // the resolver's tick may look already
        enforcer_ = std::move(enforcer);
    }
    auto t2 = std::chrono::steady_clock::now();
    spdlog::info("egress policy {}: {} rules compiled to {} entries in {} ms, loaded and bound in {} ms",
                 pol->name, pol->egress.allow.size() + pol->egress.deny.size(),
                 compiled_->v4.size() + compiled_->v6.size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count());
    loop_ = &loop;
    events_fd_ = enforcer_->events_fd();
    if (events_fd_ >= 0) loop_->add(events_fd_, EPOLLIN, [this](std::uint32_t) { enforcer_->consume_events(); });
    if (audit_only_) {
        spdlog::warn("AUDIT-ONLY: egress the policy denies is logged but allowed for sandbox {}", sandbox_name_);
    }
}

void EgressExtension::adopt(std::uint64_t id, const std::string& name, EventLoop& loop) {
    sandbox_name_ = name;
    auto objects = BpfObjects::open();
    auto pol = policy();
    compiled_ = std::make_shared<const CompiledEgress>(compile_egress(pol->egress, id));
    enforcer_ = std::make_unique<CgroupEnforcer>(CgroupEnforcer::Adopt{}, objects, id, *compiled_, audit_only_,
                                                 [this](const mw_event& e) { audit_event(e); },
                                                 sandbox_name_, shared_events_);
    {
        auto c = enforcer_->counters();
        std::lock_guard<std::mutex> lock(audit_mutex_);
        kernel_summarised_ = c.suppressed;
        kernel_summarised_socket_ = c.suppressed_socket;
    }
    {
        // What the predecessor learned from DNS stays for dns.min_ttl (its TTLs are lost), then
        // goes like any learned address; new answers renew it.
        std::lock_guard<std::mutex> lock(learned_mutex_);
        auto expiry = std::chrono::steady_clock::now() + pol->dns.min_ttl.value_or(Dns::kDefaultMinTtl);
        for (const auto& e : enforcer_->adopted_learned()) {
            for (const auto& [k, v] : e.portsets) next_set_id_ = std::max(next_set_id_, k.set_id + 1);
            if (e.family == 0) {
                replaced_sets_.insert(replaced_sets_.end(), e.portsets.begin(), e.portsets.end());
                continue;
            }
            Cidr c;
            c.family = e.family;
            c.prefix = e.family == AF_INET ? 32 : 128;
            if (e.family == AF_INET) std::copy(e.key4.addr, e.key4.addr + 4, c.addr.begin());
            else std::copy(e.key6.addr, e.key6.addr + 16, c.addr.begin());
            std::string key(reinterpret_cast<const char*>(c.addr.data()), e.family == AF_INET ? 4 : 16);
            learned_[key] = {e, {}, "", expiry, {}, c};
            next_expiry_ = std::min(next_expiry_, expiry);
        }
    }
    // The resolver comes back on the address the kernel already redirects to, if it is free.
    DnsTarget before = enforcer_->dns_target();
    dns_ = std::make_unique<DnsProxy>(*pol, dns_upstreams(pol->dns), dns_hooks(), before, netns_fd_);
    DnsTarget now = dns_->target();
    if (now.port4 != before.port4 || now.port6 != before.port6) {
        spdlog::warn("sandbox {}: the resolver's address 127.0.0.1:{} was taken; DNS now goes to port {}",
                     name, before.port4, now.port4);
        enforcer_->set_dns_target(now);
    }
    loop_ = &loop;
    events_fd_ = enforcer_->events_fd();
    if (events_fd_ >= 0) loop_->add(events_fd_, EPOLLIN, [this](std::uint32_t) { enforcer_->consume_events(); });
    spdlog::info("adopted the egress enforcement of {} (policy {}, {} learned addresses kept)", name, pol->name,
                 learned_.size());
}

void EgressExtension::reload(const Policy& next_policy) {
    auto next = std::make_shared<const Policy>(next_policy);
    auto id = compiled()->policy_id;
    auto next_compiled = std::make_shared<const CompiledEgress>(compile_egress(next->egress, id));
    bool audit_only = audit_only_flag_ || next->egress.audit_only;
    // Under the lock unbind() takes to end the binding: a reload from another thread (the
    // agent's) never meets a half-removed enforcer.
    std::lock_guard<std::mutex> lock(learned_mutex_);
    if (!enforcer_) throw Error(ErrorKind::sandbox_unavailable, "the sandbox has ended; nothing to reload");
    // Learned addresses are re-decided under the new policy: kept (recompiled with the new
    // rules) while a name they were learned for is still allowed, dropped otherwise.
    std::map<std::string, Learned> kept;
    std::vector<LearnedEntry> overlay;
    for (auto& [key, l] : learned_) {
        std::vector<std::uint32_t> rules;
        std::set<std::string> names;
        for (const auto& n : l.names) {
            auto r = DnsProxy::rules_for(*next, n);
            if (r.empty()) continue;
            names.insert(n);
            for (auto x : r) {
                if (std::find(rules.begin(), rules.end(), x) == rules.end()) rules.push_back(x);
            }
        }
        if (rules.empty()) continue;  // no longer allowed (or its name unknown): dropped by the swap
        if (reserved_range_of(l.address) && !next->dns.allow_reserved_answers) continue;
        Learned n = l;
        n.names = names;
        n.rules = rules;
        n.entry = compile_learned(next->egress, id, l.address, rules, next_set_id_);
        overlay.push_back(n.entry);
        kept.emplace(key, std::move(n));
    }
    enforcer_->update_rules(*next_compiled, overlay, audit_only);
    // The resolver answers by the new host rules from now on.
    if (dns_) dns_->set_policy(*next);
    {
        std::lock_guard<std::mutex> plock(policy_mutex_);
        policy_ = next;
        compiled_ = next_compiled;
    }
    for (auto it = names_.begin(); it != names_.end();) {
        it = kept.count(it->first) ? std::next(it) : names_.erase(it);
    }
    learned_ = std::move(kept);
    replaced_sets_.clear();  // the swap removed every port set the overlay does not use
    audit_only_ = audit_only;
    spdlog::info("sandbox {}: policy {} reloaded ({} entries, {} learned addresses kept)", sandbox_name_,
                 next->name, next_compiled->v4.size() + next_compiled->v6.size(), learned_.size());
}

DnsTarget EgressExtension::dns_target() const { return dns_ ? dns_->target() : DnsTarget{}; }

nlohmann::json EgressExtension::event_json(const mw_event& e) const {
    nlohmann::json j;
    j["time"] = iso_time(static_cast<std::int64_t>(e.time_ns) + boot_to_real_ns_);
    j["event"] = e.hook == MW_HOOK_SOCK_CREATE ? "socket_denied" : "egress_denied";
    j["verdict"] = e.verdict == MW_VERDICT_AUDIT ? "allowed_audit_only" : "denied";
    j["sandbox"] = label();
    j["policy"] = policy()->name;
    j["pid"] = e.pid;
    char comm[17] = {};
    std::memcpy(comm, e.comm, 16);
    j["comm"] = comm;
    j["hook"] = hook_name(e.hook);
    std::optional<Cidr> addr;
    if (e.hook == MW_HOOK_SOCK_CREATE) {
        j["socket"] = {{"family", family_name(static_cast<int>(e.sock_family))},
                       {"type", socktype_name(e.sock_type)},
                       {"protocol", protocol_name(e.protocol)}};
    } else {
        Cidr c;
        c.family = e.family == 4 ? AF_INET : AF_INET6;
        c.prefix = c.family == AF_INET ? 32 : 128;
        std::memcpy(c.addr.data(), e.addr, c.family == AF_INET ? 4 : 16);
        addr = c;
        j["family"] = e.family == 4 ? "ipv4" : "ipv6";
        j["protocol"] = protocol_name(e.protocol == 0 ? 6 : e.protocol);
        j["address"] = c.to_string();
        j["port"] = e.port;
        std::string key(reinterpret_cast<const char*>(c.addr.data()), c.family == AF_INET ? 4 : 16);
        {
            std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(learned_mutex_));
            if (auto n = names_.find(key); n != names_.end() && n->second.since_ns <= e.time_ns)
                j["name"] = n->second.name;
        }
    }
    j["rule"] = describe_rule(*compiled(), e.rule, addr);
    return j;
}

void EgressExtension::on_end(Sandbox& sandbox, RunReport& report) {
    (void)sandbox;
    unbind(report.extra);
}

void EgressExtension::unbind(nlohmann::json& extra) {
    if (dns_) {
        dns_->stop();  // waits out the resolver loop handling it, which takes learned_mutex_ itself
        dns_final_ = dns_->stats();
        std::lock_guard<std::mutex> lock(learned_mutex_);
        dns_.reset();
    }
    if (enforcer_) {
        {
            std::lock_guard<std::mutex> lock(learned_mutex_);
            for (auto& [k, l] : learned_) enforcer_->drop_learned(l.entry);
            learned_.clear();
            LearnedEntry sets;
            sets.portsets = std::move(replaced_sets_);
            enforcer_->drop_learned(sets);
        }
        enforcer_->consume_events();
        enforcer_->stop_events();  // a shared ring's consumer may be in our handler: no lock held here
        final_ = enforcer_->counters();
        if (loop_ && events_fd_ >= 0) loop_->remove(events_fd_);
        events_fd_ = -1;
        std::lock_guard<std::mutex> lock(learned_mutex_);
        enforcer_.reset();
    }
    // What is left in the window, with what the kernel left out since its last look (the
    // resolver's tick no longer runs: dns_ stopped).
    audit_kernel_suppressed(final_, std::chrono::steady_clock::now(), true);
    {
        std::lock_guard<std::mutex> lock(audit_mutex_);
        extra["audit_lines_suppressed"] = audit_suppressed_total_;
    }
    extra["egress_denied"] = final_.denied;
    extra["egress_policy_id"] = compiled()->policy_id;
    if (audit_only_) extra["egress_audited"] = final_.audited;
    extra["audit_events_lost"] = final_.lost;
    extra["egress_audit_only"] = audit_only_;
    extra["dns"] = {{"answered", dns_final_.answered}, {"refused", dns_final_.refused},
                    {"malformed", dns_final_.malformed}, {"failed", dns_final_.failed},
                    {"addresses_learned", learned_total_}, {"answers_blocked", answers_blocked_}};
}

void EgressExtension::note_refusal(Refusal r) {
    std::lock_guard<std::mutex> lock(refusals_mutex_);
    if (refusals_.size() < kMaxRefusals &&
        std::none_of(refusals_.begin(), refusals_.end(), [&](const Refusal& x) { return x.what == r.what; }))
        refusals_.push_back(std::move(r));
}

Refusal refused_name(const std::string& name) {
    return {name, {{"host", name}, {"ports", nlohmann::json::array({443})}, {"protocol", "tcp"}}};
}

Refusal denied_connection(const nlohmann::json& event, std::uint32_t rule) {
    std::string address = event.value("address", ""), protocol = event.value("protocol", "");
    int port = event.value("port", 0);
    std::string to = address + ":" + std::to_string(port) + "/" + protocol;
    Refusal r;
    r.what = event.contains("name") ? event["name"].get<std::string>() + " (" + to + ")" : to;
    if ((rule != MW_RULE_DEFAULT && rule != MW_RULE_RESERVED) || (protocol != "tcp" && protocol != "udp")) return r;
    if (event.contains("name") && rule == MW_RULE_DEFAULT) r.rule["host"] = event["name"];
    else r.rule["cidr"] = address + (event.value("family", "") == "ipv6" ? "/128" : "/32");
    r.rule["ports"] = nlohmann::json::array({port});
    r.rule["protocol"] = protocol;
    return r;
}

std::vector<Refusal> EgressExtension::refused_destinations() const {
    std::lock_guard<std::mutex> lock(refusals_mutex_);
    return refusals_;
}

std::uint64_t EgressExtension::egress_denied() const {
    return enforcer_ ? enforcer_->counters().denied : final_.denied;
}

}  // namespace mcpwarden
