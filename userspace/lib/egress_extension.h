// Egress enforcement as part of a sandboxed run: binds the policy to the sandbox cgroup before
// the child exists, turns kernel denial events into audit lines, and reports the counts.
#pragma once

#include <memory>
#include <string>

#include <spdlog/logger.h>

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

private:
    const Policy& policy_;
    bool audit_only_;
    std::shared_ptr<spdlog::logger> audit_;
    std::string sandbox_name_;
    CompiledEgress compiled_;
    std::unique_ptr<CgroupEnforcer> enforcer_;
    EventLoop* loop_ = nullptr;
    int events_fd_ = -1;
    std::int64_t boot_to_real_ns_ = 0;
    std::uint64_t events_seen_ = 0;
    EgressCounters final_{};
};

}  // namespace mcpwarden
