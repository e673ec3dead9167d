#include "egress_extension.h"

#include "error.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include <spdlog/sinks/basic_file_sink.h>
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

std::shared_ptr<spdlog::logger> make_audit_logger(const std::string& path) {
    std::shared_ptr<spdlog::logger> logger;
    if (path.empty()) {
        logger = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
        logger = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::basic_file_sink_mt>(path));
    }
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::info);
    return logger;
}

EgressExtension::EgressExtension(const Policy& policy, bool audit_only, std::shared_ptr<spdlog::logger> audit)
    : policy_(policy), audit_only_(audit_only || policy.egress.audit_only), audit_(std::move(audit)) {
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

void EgressExtension::audit_line(nlohmann::json j) {
    if (!audit_) return;
    j["sandbox"] = sandbox_name_;
    j["policy"] = policy_.name;
    audit_->info(j.dump());
}

bool EgressExtension::admit(const std::string& name, const std::vector<std::uint32_t>& rules,
                            const std::vector<DnsAddress>& addresses) {
    std::lock_guard<std::mutex> lock(learned_mutex_);
    auto now = std::chrono::steady_clock::now();
    auto floor = policy_.dns.min_ttl.value_or(std::chrono::seconds(30));
    auto cap = policy_.dns.max_learned.value_or(4096);
    for (const auto& a : addresses) {
        Cidr c;
        c.family = a.address.size() == 4 ? AF_INET : AF_INET6;
        c.prefix = c.family == AF_INET ? 32 : 128;
        std::copy(a.address.begin(), a.address.end(), c.addr.begin());
        // ::ffff:a.b.c.d in an AAAA answer is IPv4 to the kernel.
        if (auto norm = parse_address(c.to_string())) c = *norm;
        std::string key(reinterpret_cast<const char*>(c.addr.data()), c.family == AF_INET ? 4 : 16);
        if (auto range = reserved_range_of(c); range && !policy_.dns.allow_reserved_answers) {
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
        auto ttl_now = std::max<std::chrono::milliseconds>(std::chrono::seconds(a.ttl), floor);
        if (it != learned_.end() && std::all_of(rules.begin(), rules.end(), [&](std::uint32_t r) {
                return std::find(it->second.rules.begin(), it->second.rules.end(), r) != it->second.rules.end();
            })) {
            // Already admitted for these rules: the entry stands, only its life is extended.
            it->second.expiry = std::max(it->second.expiry, now + ttl_now);
            continue;
        }
        std::vector<std::uint32_t> all_rules = rules;
        if (it != learned_.end()) {
            for (auto r : it->second.rules) {
                if (std::find(all_rules.begin(), all_rules.end(), r) == all_rules.end()) all_rules.push_back(r);
            }
        }
        auto entry = compile_learned(policy_.egress, compiled_.policy_id, c, all_rules, next_set_id_);
        try {
            enforcer_->put_learned(entry);
        } catch (const Error& e) {
            spdlog::error("cannot admit {} for {}: {}", c.to_string(), name, e.what());
            return false;
        }
        auto ttl = std::max<std::chrono::milliseconds>(std::chrono::seconds(a.ttl), floor);
        if (it != learned_.end()) {
            // Port sets of the entry it replaces go when the sandbox ends.
            for (auto& ps : it->second.entry.portsets) replaced_sets_.push_back(ps);
            it->second.entry = entry;
            it->second.rules = all_rules;
            it->second.expiry = std::max(it->second.expiry, now + ttl);
        } else {
            learned_[key] = {entry, all_rules, name, now + ttl};
            ++learned_total_;
        }
        names_[key] = name;
    }
    return true;
}

// Addresses whose TTL ran out leave the allow-list, unless a connected UDP socket still uses
// them (TCP connections opened under them are not affected: the backstop checks only SYNs).
void EgressExtension::expire(std::chrono::steady_clock::time_point now) {
    std::lock_guard<std::mutex> lock(learned_mutex_);
    for (auto it = learned_.begin(); it != learned_.end();) {
        if (it->second.expiry > now) {
            ++it;
            continue;
        }
        enforcer_->drop_learned(it->second.entry);
        it = learned_.erase(it);
    }
}

void EgressExtension::before_spawn(Sandbox& sandbox) {
    sandbox_name_ = sandbox.cgroup().name();
    auto objects = BpfObjects::open();
    sweep_stale_enforcement();
    std::uint64_t id = sandbox.cgroup().unified_id();
    auto t0 = std::chrono::steady_clock::now();
    compiled_ = compile_egress(policy_.egress, id);
    auto t1 = std::chrono::steady_clock::now();
    DnsProxy::Hooks hooks;
    hooks.admit = [this](const std::string& name, const std::vector<std::uint32_t>& rules,
                         const std::vector<DnsAddress>& addrs) { return admit(name, rules, addrs); };
    hooks.refused = [this](const std::string& name, std::uint16_t qtype) {
        audit_line({{"event", "dns_refused"}, {"name", name}, {"qtype", qtype},
                    {"rule", "no host rule allows this name"}});
    };
    hooks.tick = [this] { expire(std::chrono::steady_clock::now()); };
    dns_ = std::make_unique<DnsProxy>(policy_, dns_upstreams(policy_.dns), hooks);
    enforcer_ = std::make_unique<CgroupEnforcer>(objects, sandbox.cgroup().unified_fd(), id, compiled_,
                                                 audit_only_, [this](const mw_event& e) {
                                                     ++events_seen_;
                                                     if (audit_) audit_->info(event_json(e).dump());
                                                 },
                                                 sandbox_name_, dns_->target());
    auto t2 = std::chrono::steady_clock::now();
    spdlog::info("egress policy {}: {} rules compiled to {} entries in {} ms, loaded and bound in {} ms",
                 policy_.name, policy_.egress.allow.size() + policy_.egress.deny.size(),
                 compiled_.v4.size() + compiled_.v6.size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count());
    loop_ = &sandbox.loop();
    events_fd_ = enforcer_->events_fd();
    loop_->add(events_fd_, EPOLLIN, [this](std::uint32_t) { enforcer_->consume_events(); });
    if (audit_only_) {
        spdlog::warn("AUDIT-ONLY: egress the policy denies is logged but allowed for sandbox {}", sandbox_name_);
    }
}

nlohmann::json EgressExtension::event_json(const mw_event& e) const {
    nlohmann::json j;
    j["time"] = iso_time(static_cast<std::int64_t>(e.time_ns) + boot_to_real_ns_);
    j["event"] = e.hook == MW_HOOK_SOCK_CREATE ? "socket_denied" : "egress_denied";
    j["verdict"] = e.verdict == MW_VERDICT_AUDIT ? "allowed_audit_only" : "denied";
    j["sandbox"] = sandbox_name_;
    j["policy"] = policy_.name;
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
            if (auto n = names_.find(key); n != names_.end()) j["name"] = n->second;
        }
    }
    j["rule"] = describe_rule(compiled_, e.rule, addr);
    return j;
}

void EgressExtension::on_end(Sandbox& sandbox, RunReport& report) {
    (void)sandbox;
    if (dns_) {
        dns_->stop();
        dns_final_ = dns_->stats();
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
        final_ = enforcer_->counters();
        if (loop_ && events_fd_ >= 0) loop_->remove(events_fd_);
        events_fd_ = -1;
        enforcer_.reset();
    }
    report.extra["egress_denied"] = final_.denied;
    report.extra["egress_policy_id"] = compiled_.policy_id;
    if (audit_only_) report.extra["egress_audited"] = final_.audited;
    report.extra["audit_events_lost"] = final_.lost;
    report.extra["egress_audit_only"] = audit_only_;
    report.extra["dns"] = {{"answered", dns_final_.answered}, {"refused", dns_final_.refused},
                           {"malformed", dns_final_.malformed}, {"failed", dns_final_.failed},
                           {"addresses_learned", learned_total_}, {"answers_blocked", answers_blocked_}};
}

std::uint64_t EgressExtension::egress_denied() const {
    return enforcer_ ? enforcer_->counters().denied : final_.denied;
}

}  // namespace mcpwarden
