// SPDX-License-Identifier: Apache-2.0
// The flags `run` and `call` share: the policy, limits, user, environment, state, report and
// agent socket, and what both do with them (standalone RunOptions, or an agent request).
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent_client.h"
#include "fd.h"
#include "sandbox.h"

namespace mcpwarden {

struct SandboxFlags {
    static constexpr const char* kDefaultStateDir = "/var/lib/mcpwarden";

    std::string policy_file, policy_dir, memory, pids, cpu, timeout, user, report, state_dir = kDefaultStateDir,
                                                                                    cgroup_root, audit_file, agent;
    std::vector<std::string> env, command;
    bool allow_degraded = false;

    // --policy and --policy-dir.
    void define_policy(CLI::App& app);
    // The limits (`timeout_help` says what the timeout covers), --user, --env, --report,
    // --state-dir, --cgroup-root, --audit (then `more`, a command's own flags, are added by it),
    // --allow-degraded and --agent; `agent_decides` lists the command's extra flags the agent
    // decides instead (", --audit-only").
    void define_sandbox(CLI::App& app, const std::string& timeout_help, const std::string& agent_decides = "");

    // Standalone: the policy loaded, limits merged (flags win), everything else from the flags.
    RunOptions run_options() const;
    // Through the agent: refuses the standalone-only flags, then the request's sandbox part.
    nlohmann::json agent_request(const std::string& op) const;
    // Opens --report's FILE now, before the server starts (open_output): later writes go to
    // this descriptor, never to the path again. Throws Error(usage) when it is unsafe.
    void open_report();
    // The JSON report to --report (FILE, or '-' for stderr); nothing without --report.
    void write_report(const nlohmann::json& j) const;
    UniqueFd report_fd;
};

}  // namespace mcpwarden
