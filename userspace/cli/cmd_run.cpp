// mcpwarden run: one command in a fresh sandbox.
#include <sys/prctl.h>

#include <fstream>
#include <iostream>

#include <spdlog/spdlog.h>

#include "agent_client.h"
#include "commands.h"
#include "egress_extension.h"
#include "error.h"
#include "exit_codes.h"
#include "mcp_proxy.h"
#include "policy.h"
#include "policy_dir.h"
#include "sandbox.h"
#include "units.h"

namespace mcpwarden {
namespace {

class RunCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "run",
            "Run CMD in a fresh sandbox: its own cgroup (entered before its first instruction), "
            "an unprivileged user, no capabilities, a clean environment, and the policy's limits. "
            "Stdin, stdout and stderr pass through unchanged (with --mcp, or a policy with an mcp "
            "section, the relay speaks MCP and enforces the policy's mcp limits).");
        app_->add_option("--policy", policy_file_,
                         "Policy file (YAML), or NAME for POLICY_DIR/NAME.yaml; flags override its limits");
        app_->add_option("--policy-dir", policy_dir_,
                         "Directory that policy names resolve in (default: the checkout's policies/ "
                         "when run from a build tree, else /etc/mcpwarden/policies)");
        app_->add_option("--memory", memory_, "Memory limit, as 64M, 512Mi or 1G (no swap)");
        app_->add_option("--pids", pids_, "Maximum number of processes and threads");
        app_->add_option("--cpu", cpu_, "CPU limit in cores, as 1, 0.5 or 250m");
        app_->add_option("--timeout", timeout_, "Wall-clock limit, as 30s, 10m or 1h; the whole process tree is killed");
        app_->add_option("--user", user_, "Unprivileged user to run as (default: the policy's, else nobody)");
        app_->add_option("--env", env_, "Pass NAME from mcpwarden's environment, or set NAME=VALUE (repeatable)")
            ->allow_extra_args(false);
        app_->add_option("--report", report_, "Write a JSON report of the run to FILE ('-' = stderr)");
        app_->add_option("--state-dir", state_dir_, "Where HOME, TMPDIR and per-policy caches live")
            ->capture_default_str();
        app_->add_option("--cgroup-root", cgroup_root_, "Create sandbox cgroups beneath this cgroup path instead of mcpwarden's own");
        app_->add_option("--audit", audit_file_, "Append egress audit events (JSON lines) to FILE instead of stderr");
        app_->add_flag("--audit-only", audit_only_, "Log the egress the policy would deny, but allow it (for writing a policy from observed traffic)");
        app_->add_flag("--mcp", mcp_,
                       "Speak MCP on the relayed stdio (also on when the policy has an mcp section): "
                       "input limits, per-call timeouts, tool filters, truncation, structured errors");
        app_->add_flag("--allow-degraded", allow_degraded_, "If a limit's cgroup controller is missing, fall back to rlimits (with a warning) instead of refusing");
        app_->add_option("--agent", agent_,
                         "Go through the mcpwarden agent listening on SOCKET (default for users other "
                         "than root: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock; root runs "
                         "standalone unless this or $MCPWARDEN_AGENT is given). Through the agent, "
                         "--policy NAME is required and --user, --state-dir, --cgroup-root, --audit, "
                         "--audit-only, --policy-dir and --allow-degraded are the agent's to decide");
        app_->add_option("command", command_, "The command and its arguments (after --)")->required();
        app_->footer(
            "Exit status: the command's own status; 128+N if signal N ended it; 124 timeout, "
            "120 memory exceeded, 121 pids exceeded, 125 sandbox unavailable (refused), "
            "78 invalid policy, 64 usage error, 126/127 command not executable/not found; through the "
            "agent also 67 forbidden by its configuration, 75 busy (at its sandbox cap).");
    }

    int execute() override {
        if (auto client = agent_for_cli(agent_)) return through_agent(*client);
        RunOptions opts;
        if (!policy_file_.empty()) opts.policy = load_policy_ref(policy_file_, policy_dir_);
        opts.limits = opts.policy.limits;
        std::string why;
        if (!memory_.empty()) {
            auto v = parse_size(memory_, &why);
            if (!v) throw Error(ErrorKind::usage, "--memory " + memory_ + ": " + why);
            opts.limits.memory_bytes = *v;
        }
        if (!pids_.empty()) {
            auto v = parse_size(pids_, &why);  // plain count; units would be odd but harmless
            if (!v || *v == 0 || pids_.find_first_not_of("0123456789") != std::string::npos)
                throw Error(ErrorKind::usage, "--pids " + pids_ + ": must be a whole number above 0");
            opts.limits.pids = *v;
        }
        if (!cpu_.empty()) {
            auto v = parse_cpu(cpu_, &why);
            if (!v) throw Error(ErrorKind::usage, "--cpu " + cpu_ + ": " + why);
            opts.limits.cpu_millicores = *v;
        }
        if (!timeout_.empty()) {
            auto v = parse_duration(timeout_, &why);
            if (!v || v->count() <= 0) throw Error(ErrorKind::usage, "--timeout " + timeout_ + ": " + (why.empty() ? "must be longer than 0" : why));
            opts.limits.timeout = *v;
        }
        opts.command = command_;
        opts.user = user_;
        opts.env_args = env_;
        opts.state_dir = state_dir_;
        opts.cgroup_root = cgroup_root_;
        opts.allow_degraded = allow_degraded_;

        // Orphaned processes of the sandbox are reparented to us and reaped, not left as zombies.
        ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        Sandbox sandbox(opts);
        // Egress: default deny; the policy's egress section opens what it allows.
        sandbox.add_extension(std::make_shared<EgressExtension>(sandbox.options().policy, audit_only_,
                                                                make_audit_logger(audit_file_)));
        // MCP-aware relay: by flag, or by the policy's mcp section.
        if (mcp_ || opts.policy.mcp.enabled)
            sandbox.add_extension(std::make_shared<McpProxy>(McpConfig::from_policy(opts.policy.mcp)));
        RunReport report;
        try {
            report = sandbox.run();
        } catch (const Error& e) {
            write_report(e.to_json());
            throw;
        }
        write_report(report.to_json());
        if (report.status != "exited" && report.status != "signaled") {
            spdlog::warn("sandbox ended: {}", report.status);
        }
        return report.process_exit_code();
    }

private:
    // The agent runs the sandbox; the server gets our stdio directly.
    int through_agent(AgentClient& client) {
        refuse_standalone_flags({{"--user", !user_.empty()}, {"--state-dir", state_dir_ != kDefaultStateDir},
                                 {"--cgroup-root", !cgroup_root_.empty()}, {"--audit", !audit_file_.empty()},
                                 {"--audit-only", audit_only_}, {"--policy-dir", !policy_dir_.empty()},
                                 {"--allow-degraded", allow_degraded_}});
        auto req = agent_sandbox_request("create", {policy_file_, memory_, pids_, cpu_, timeout_, env_, command_});
        req["stdio"] = "pass";
        if (mcp_) req["mcp"] = true;
        nlohmann::json result;
        try {
            result = agent_run(client, req);
        } catch (const Error& e) {
            write_report(e.to_json());
            throw;
        }
        write_report(result.value("report", nlohmann::json::object()));
        return result.value("exit_code", exit_code::internal);
    }

    static constexpr const char* kDefaultStateDir = "/var/lib/mcpwarden";

    void write_report(const nlohmann::json& j) {
        if (report_.empty()) return;
        std::string text = j.dump() + "\n";
        if (report_ == "-") {
            std::cerr << text;
            return;
        }
        std::ofstream out(report_, std::ios::trunc);
        out << text;
        if (!out) spdlog::error("could not write report to {}", report_);
    }

    std::string audit_file_;
    bool audit_only_ = false;
    std::string policy_dir_;
    std::string policy_file_, memory_, pids_, cpu_, timeout_, user_, report_, cgroup_root_;
    std::string state_dir_ = kDefaultStateDir;
    std::string agent_;
    std::vector<std::string> env_, command_;
    bool allow_degraded_ = false;
    bool mcp_ = false;
};

}  // namespace

std::unique_ptr<Command> make_run_command() { return std::make_unique<RunCommand>(); }

}  // namespace mcpwarden
