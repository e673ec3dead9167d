// Egress enforcement as part of a sandboxed run: binds the policy to the sandbox cgroup before
// the child exists, turns kernel denial events into audit lines, and reports the counts.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/logger.h>

#include "dns_proxy.h"
#include "egress_compiler.h"
#include "enforcer.h"
#include "sandbox.h"

namespace mcpwarden {

// Where audit lines go: one JSON object per line.
std::shared_ptr<spdlog::logger> make_audit_logger(const std::string& path);  // "" = stderr

class EgressExtension : public SandboxExtension {
public:
    EgressExtension(const Policy& policy, bool audit_only, std::shared_ptr<spdlog::logger> audit);
    ~EgressExtension() override;

    void before_spawn(Sandbox& sandbox) override;
    void on_end(Sandbox& sandbox, RunReport& report) override;
    std::uint64_t egress_denied() const override;

    // The audit line of one kernel event (exposed for tests).
    nlohmann::json event_json(const mw_event& e) const;

    // The resolver's hooks (also driven directly by tests).
    bool admit(const std::string& name, const std::vector<std::uint32_t>& rules,
               const std::vector<DnsAddress>& addresses);
    void expire(std::chrono::steady_clock::time_point now);

private:
    struct Learned {
        LearnedEntry entry;
        std::vector<std::uint32_t> rules;
        std::string name;
        std::chrono::steady_clock::time_point expiry;
    };
    void audit_line(nlohmann::json j);

    const Policy& policy_;
    bool audit_only_;
    std::shared_ptr<spdlog::logger> audit_;
    std::string sandbox_name_;
    CompiledEgress compiled_;
    std::unique_ptr<CgroupEnforcer> enforcer_;
    std::unique_ptr<DnsProxy> dns_;
    std::mutex learned_mutex_;
    std::map<std::string, Learned> learned_;      // by address bytes
    std::map<std::string, std::string> names_;    // address bytes -> name it was learned for
    std::uint32_t next_set_id_ = 1u << 24;        // portsets of learned entries
    std::vector<std::pair<mw_portset_key, mw_portset>> replaced_sets_;
    std::uint64_t learned_total_ = 0, answers_blocked_ = 0;
    DnsProxy::Stats dns_final_{};
    EventLoop* loop_ = nullptr;
    int events_fd_ = -1;
    std::int64_t boot_to_real_ns_ = 0;
    std::uint64_t events_seen_ = 0;
    EgressCounters final_{};
};

}  // namespace mcpwarden
