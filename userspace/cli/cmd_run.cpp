// SPDX-License-Identifier: Apache-2.0
// mcpwarden run: one command in a fresh sandbox.
#include <signal.h>
#include <sys/prctl.h>

#include <spdlog/spdlog.h>

#include "agent_client.h"
#include "commands.h"
#include "egress_extension.h"
#include "error.h"
#include "exit_codes.h"
#include "mcp_proxy.h"
#include "policy.h"
#include "sandbox.h"
#include "sandbox_flags.h"

namespace mcpwarden {
namespace {

class RunCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "run",
            "Run CMD in a fresh sandbox: its own cgroup (entered before its first instruction), "
            "an unprivileged user, no capabilities, a clean environment, and the policy's limits; "
            "as PID 2 of a PID namespace of its own (mcpwarden-init is PID 1), in a session and "
            "session keyring of its own. SIGINT, SIGTERM and SIGHUP of mcpwarden go on to the "
            "command; 5 s later (or at a second signal) everything left is killed. "
            "Stdin, stdout and stderr pass through unchanged. A terminal on stdin is not the "
            "command's controlling terminal: it reads and writes it, but cannot push input into "
            "your shell (TIOCSTI) or signal its jobs. With --mcp, or a policy with an mcp "
            "section, the relay speaks MCP and enforces the policy's mcp limits.");
        flags_.define_policy(*app_);
        flags_.define_sandbox(*app_, "Wall-clock limit, as 30s, 10m or 1h; the whole process tree is killed",
                              ", --audit-only");
        app_->add_flag("--audit-only", audit_only_, "Log the egress the policy would deny, but allow it (for writing a policy from observed traffic)");
        app_->add_flag("--mcp", mcp_,
                       "Speak MCP on the relayed stdio (also on when the policy has an mcp section): "
                       "input limits, per-call timeouts, tool filters, truncation, structured errors");
        app_->add_option("command", flags_.command,
                         "The command and its arguments: mcpwarden's options end at the first "
                         "argument that is not one of them (a -- before it is accepted too)")
            ->required();
        app_->footer(
            "Exit status: the command's own status (in MCP mode 0 when the shutdown sequence, after "
            "the client closed stdin, ended a server that ignored EOF); 128+N if signal N ended it; 124 timeout, "
            "120 memory exceeded, 121 pids exceeded, 125 sandbox unavailable (refused), "
            "78 invalid policy, 64 usage error, 126/127 command not executable/not found; through the "
            "agent also 67 forbidden by its configuration, 75 busy (at its sandbox cap).");
    }

    int execute() override {
        flags_.open_report();
        if (auto client = agent_for_cli(flags_.agent)) return through_agent(*client);
        RunOptions opts = flags_.run_options();

        // Orphaned processes of the sandbox are reparented to us and reaped, not left as zombies.
        ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        Sandbox sandbox(opts);
        // Egress: default deny; the policy's egress section opens what it allows.
        sandbox.add_extension(std::make_shared<EgressExtension>(sandbox.options().policy, audit_only_,
                                                                make_audit_logger(flags_.audit_file)));
        // MCP-aware relay: by flag, or by the policy's mcp section.
        std::shared_ptr<McpProxy> proxy;
        if (mcp_ || opts.policy.mcp.enabled) {
            proxy = std::make_shared<McpProxy>(McpConfig::from_policy(opts.policy.mcp));
            sandbox.add_extension(proxy);
        }
        RunReport report;
        try {
            report = sandbox.run();
        } catch (const Error& e) {
            write_report(e.to_json());
            throw;
        }
        write_report(report.to_json());
        bool ended_by_us = report.status == "interrupted" ||
                           (report.status == "signaled" && (report.signal == SIGTERM || report.signal == SIGKILL));
        if (proxy && proxy->ended_by_shutdown() && ended_by_us) {
            // A server that ignores EOF is ended by the shutdown sequence: its normal end.
            spdlog::info("sandbox ended by the MCP shutdown sequence ({})", report.status);
            return 0;
        }
        if (report.status != "exited" && report.status != "signaled") {
            spdlog::warn("sandbox ended: {}", report.status);
        }
        return report.process_exit_code();
    }

private:
    // The agent runs the sandbox; the server gets our stdio directly.
    int through_agent(AgentClient& client) {
        refuse_standalone_flags({{"--audit-only", audit_only_}});
        auto req = flags_.agent_request("create");
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

    void write_report(const nlohmann::json& j) const { flags_.write_report(j); }

    SandboxFlags flags_;
    bool audit_only_ = false;
    bool mcp_ = false;
};

}  // namespace

std::unique_ptr<Command> make_run_command() { return std::make_unique<RunCommand>(); }

}  // namespace mcpwarden
