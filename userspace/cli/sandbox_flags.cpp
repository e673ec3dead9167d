// SPDX-License-Identifier: Apache-2.0
#include "sandbox_flags.h"

#include <iostream>

#include <spdlog/spdlog.h>

#include "error.h"
#include "paths.h"
#include "policy_dir.h"
#include "safe_output.h"
#include "units.h"

namespace mcpwarden {

void SandboxFlags::define_policy(CLI::App& app) {
    app.add_option("--policy", policy_file, "Policy file (YAML), or NAME for POLICY_DIR/NAME.yaml; flags override its limits");
    app.add_option("--policy-dir", policy_dir,
                   "Directory that policy names resolve in (default: the checkout's policies/ "
                   "when run from a build tree, else " MCPWARDEN_POLICY_DIR ")");
}

void SandboxFlags::define_sandbox(CLI::App& app, const std::string& timeout_help, const std::string& agent_decides) {
    app.add_option("--memory", memory, "Memory limit, as 64M, 512Mi or 1G (no swap)");
    app.add_option("--pids", pids, "Maximum number of processes and threads");
    app.add_option("--cpu", cpu, "CPU limit in cores, as 1, 0.5 or 250m");
    app.add_option("--timeout", timeout, timeout_help);
    app.add_option("--user", user, "Unprivileged user to run as (default: the policy's, else nobody)");
    app.add_option("--env", env, "Pass NAME from mcpwarden's environment, or set NAME=VALUE (repeatable)")
        ->allow_extra_args(false);
    app.add_option("--report", report,
                   "Write the JSON report of the sandbox to FILE ('-' = stderr); FILE is opened before the server "
                   "starts, never through a link, and refused in a directory others may write unless it is sticky");
    app.add_option("--state-dir", state_dir, "Where HOME, TMPDIR and per-policy caches live")->capture_default_str();
    app.add_option("--cgroup-root", cgroup_root, "Create sandbox cgroups beneath this cgroup path instead of mcpwarden's own");
    app.add_option("--audit", audit_file,
                   "Append egress audit events (JSON lines) to FILE (opened as --report's) instead of stderr, where "
                   "each line starts with 'mcpwarden-audit: '");
    app.add_flag("--allow-degraded", allow_degraded,
                 "If a limit's cgroup controller is missing, fall back to rlimits (with a warning) instead of refusing");
    app.add_option("--agent", agent,
                   "Go through the mcpwarden agent listening on SOCKET (default for users other "
                   "than root: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock; root runs "
                   "standalone unless this or $MCPWARDEN_AGENT is given). Through the agent, "
                   "--policy NAME is required and --user, --state-dir, --cgroup-root, --audit" +
                       agent_decides + ", --policy-dir and --allow-degraded are the agent's to decide");
}

RunOptions SandboxFlags::run_options() const {
    RunOptions opts;
    if (!policy_file.empty()) opts.policy = load_policy_ref(policy_file, policy_dir);
    opts.limits = opts.policy.limits;
    std::string why;
    if (!memory.empty()) {
        auto v = parse_size(memory, &why);
        if (!v) throw Error(ErrorKind::usage, "--memory " + memory + ": " + why);
        opts.limits.memory_bytes = *v;
    }
    if (!pids.empty()) {
        auto v = parse_size(pids, &why);  // a plain count: units would be odd but harmless
        if (!v || *v == 0 || pids.find_first_not_of("0123456789") != std::string::npos)
            throw Error(ErrorKind::usage, "--pids " + pids + ": must be a whole number above 0");
        opts.limits.pids = *v;
    }
    if (!cpu.empty()) {
        auto v = parse_cpu(cpu, &why);
        if (!v) throw Error(ErrorKind::usage, "--cpu " + cpu + ": " + why);
        opts.limits.cpu_millicores = *v;
    }
    if (!timeout.empty()) {
        auto v = parse_duration(timeout, &why);
        if (!v || v->count() <= 0)
            throw Error(ErrorKind::usage, "--timeout " + timeout + ": " + (why.empty() ? "must be longer than 0" : why));
        opts.limits.timeout = *v;
    }
    opts.command = command;
    opts.user = user;
    opts.env_args = env;
    opts.state_dir = state_dir;
    opts.cgroup_root = cgroup_root;
    opts.allow_degraded = allow_degraded;
    return opts;
}

nlohmann::json SandboxFlags::agent_request(const std::string& op) const {
    refuse_standalone_flags({{"--user", !user.empty()}, {"--state-dir", state_dir != kDefaultStateDir},
                             {"--cgroup-root", !cgroup_root.empty()}, {"--audit", !audit_file.empty()},
                             {"--policy-dir", !policy_dir.empty()}, {"--allow-degraded", allow_degraded}});
    return agent_sandbox_request(op, {policy_file, memory, pids, cpu, timeout, env, command});
}

void SandboxFlags::open_report() {
    if (!report.empty() && report != "-") report_fd = open_output(report, OutputMode::truncate, "--report");
}

void SandboxFlags::write_report(const nlohmann::json& j) const {
    if (report.empty()) return;
    std::string text = j.dump() + "\n";
    if (report == "-") {
        std::cerr << text;
        return;
    }
    if (!report_fd || !write_all(report_fd.get(), text.data(), text.size()))
        spdlog::error("could not write report to {}", report);
}

}  // namespace mcpwarden
