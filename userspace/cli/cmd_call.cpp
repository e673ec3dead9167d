// mcpwarden call: one MCP request to a server started in a fresh sandbox, one JSON object out.
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

class CallCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "call",
            "Start the MCP stdio server CMD in a fresh sandbox (as `run` does), perform the MCP "
            "handshake it supports, send one request, print one JSON object on stdout (the "
            "result, or {\"error\": {...}}), and tear everything down. The policy's mcp section "
            "(limits, tool filters, timeouts, truncation) applies as with `run --mcp`.");
        app_->add_option("--policy", policy_file_,
                         "Policy file (YAML), or NAME for POLICY_DIR/NAME.yaml; flags override its limits");
        app_->add_option("--policy-dir", policy_dir_,
                         "Directory that policy names resolve in (default: the checkout's policies/ "
                         "when run from a build tree, else /etc/mcpwarden/policies)");
        app_->add_option("--method", method_,
                         "tools/call, tools/list, resources/read or prompts/get (default: inferred "
                         "from --tool, --uri or --prompt)")
            ->check(CLI::IsMember({"tools/call", "tools/list", "resources/read", "prompts/get"}));
        app_->add_option("--tool", tool_, "Tool to call (tools/call)");
        app_->add_option("--args", args_, "Arguments as a JSON object (tools/call, prompts/get); default {}");
        app_->add_option("--uri", uri_, "Resource to read (resources/read)");
        app_->add_option("--prompt", prompt_, "Prompt to get (prompts/get)");
        app_->add_option("--call-timeout", call_timeout_,
                         "Deadline of each request, as 30s or 2m (default: the policy's "
                         "mcp.call_timeout or tool_timeouts, else 60s)");
        app_->add_option("--memory", memory_, "Memory limit, as 64M, 512Mi or 1G (no swap)");
        app_->add_option("--pids", pids_, "Maximum number of processes and threads");
        app_->add_option("--cpu", cpu_, "CPU limit in cores, as 1, 0.5 or 250m");
        app_->add_option("--timeout", timeout_, "Wall-clock limit of the whole sandbox, as 30s, 10m or 1h");
        app_->add_option("--user", user_, "Unprivileged user to run as (default: the policy's, else nobody)");
        app_->add_option("--env", env_, "Pass NAME from mcpwarden's environment, or set NAME=VALUE (repeatable)");
        app_->add_option("--report", report_, "Write the JSON report of the sandbox to FILE ('-' = stderr)");
        app_->add_option("--state-dir", state_dir_, "Where HOME, TMPDIR and per-policy caches live")
            ->capture_default_str();
        app_->add_option("--cgroup-root", cgroup_root_, "Create sandbox cgroups beneath this cgroup path instead of mcpwarden's own");
        app_->add_option("--audit", audit_file_, "Append egress audit events (JSON lines) to FILE instead of stderr");
        app_->add_flag("--allow-degraded", allow_degraded_, "If a limit's cgroup controller is missing, fall back to rlimits (with a warning) instead of refusing");
        app_->add_option("--agent", agent_,
                         "Go through the mcpwarden agent listening on SOCKET (default for users other "
                         "than root: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock; root runs "
                         "standalone unless this or $MCPWARDEN_AGENT is given). Through the agent, "
                         "--policy NAME is required and --user, --state-dir, --cgroup-root, --audit, "
                         "--policy-dir and --allow-degraded are the agent's to decide");
        app_->add_option("command", command_, "The server command and its arguments (after --)")->required();
        app_->footer(
            "Exit status: 0 result; 1 result with isError (the tool failed); 2 the server answered "
            "with a JSON-RPC error; 65 input refused (input_too_large, input_invalid); 69 the "
            "server ended before answering; 76 the answer was not JSON-RPC; 77 tool denied by the "
            "policy; 122 call timeout; 123 result too large; 120 memory exceeded; 121 pids "
            "exceeded; 124 sandbox timeout; 125 sandbox unavailable; 78 invalid policy; 64 usage "
            "error; 70 internal error; through the agent also 67 forbidden, 75 busy. Shutdown: the server's stdin is closed, then SIGTERM after "
            "2 s, then the sandbox is killed after 2 s more.");
    }

    int execute() override {
        try {
            return call();
        } catch (const Error& e) {
            // `call` always answers with one JSON object, errors before the server ran included.
            std::cout << nlohmann::json{{"error", e.to_json()}}.dump() << "\n" << std::flush;
            spdlog::error("{}: {}", to_string(e.kind()), e.what());
            return exit_code_for(e.kind());
        }
    }

private:
    CallRequest build_request() const {
        int targets = !tool_.empty() + !uri_.empty() + !prompt_.empty();
        if (targets > 1) throw Error(ErrorKind::usage, "give one of --tool, --uri and --prompt");
        std::string method = method_;
        if (method.empty()) {
            method = !tool_.empty() ? "tools/call" : !uri_.empty() ? "resources/read" : !prompt_.empty() ? "prompts/get" : "";
            if (method.empty())
                throw Error(ErrorKind::usage, "say what to call: --tool NAME, --uri URI, --prompt NAME or --method tools/list");
        }
        CallRequest r;
        r.method = method;
        nlohmann::json args = nlohmann::json::object();
        if (!args_.empty()) {
            args = nlohmann::json::parse(args_, nullptr, false);
            if (!args.is_object()) throw Error(ErrorKind::usage, "--args must be a JSON object, as '{\"text\": \"hi\"}'");
        }
        if (method == "tools/call") {
            if (tool_.empty()) throw Error(ErrorKind::usage, "tools/call needs --tool NAME");
            r.params = {{"name", tool_}, {"arguments", args}};
        } else if (method == "resources/read") {
            if (uri_.empty()) throw Error(ErrorKind::usage, "resources/read needs --uri URI");
            r.params = {{"uri", uri_}};
        } else if (method == "prompts/get") {
            if (prompt_.empty()) throw Error(ErrorKind::usage, "prompts/get needs --prompt NAME");
            r.params = {{"name", prompt_}, {"arguments", args}};
        } else {
            if (targets > 0 || !args_.empty()) throw Error(ErrorKind::usage, "tools/list takes no --tool, --uri, --prompt or --args");
        }
        return r;
    }

    int call() {
        CallRequest request = build_request();
        if (auto client = agent_for_cli(agent_)) return through_agent(*client, request);
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
            auto v = parse_size(pids_, &why);
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
        McpConfig config = McpConfig::from_policy(opts.policy.mcp);
        if (!call_timeout_.empty()) {
            auto v = parse_duration(call_timeout_, &why);
            if (!v || v->count() <= 0)
                throw Error(ErrorKind::usage, "--call-timeout " + call_timeout_ + ": " + (why.empty() ? "must be longer than 0" : why));
            config.call_timeout = *v;
            config.tool_timeouts.clear();
        }
        opts.command = command_;
        opts.user = user_;
        opts.env_args = env_;
        opts.state_dir = state_dir_;
        opts.cgroup_root = cgroup_root_;
        opts.allow_degraded = allow_degraded_;

        ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        Sandbox sandbox(opts);
        sandbox.add_extension(std::make_shared<EgressExtension>(sandbox.options().policy, false,
                                                                make_audit_logger(audit_file_)));
        auto mcp = std::make_shared<McpCall>(config, request);
        sandbox.add_extension(mcp);
        RunReport report;
        try {
            report = sandbox.run();
        } catch (const Error& e) {
            write_report(e.to_json());
            throw;
        }
        write_report(report.to_json());
        const CallOutcome& outcome = mcp->outcome();
        std::cout << outcome.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n" << std::flush;
        if (!outcome.ok) spdlog::info("call ended: {}", outcome.error.value("message", std::string()));
        return outcome.exit_code();
    }

    // The agent runs the server and the call; we print what it answers.
    int through_agent(AgentClient& client, const CallRequest& request) {
        refuse_standalone_flags({{"--user", !user_.empty()}, {"--state-dir", state_dir_ != kDefaultStateDir},
                                 {"--cgroup-root", !cgroup_root_.empty()}, {"--audit", !audit_file_.empty()},
                                 {"--policy-dir", !policy_dir_.empty()}, {"--allow-degraded", allow_degraded_}});
        auto req = agent_sandbox_request("call", {policy_file_, memory_, pids_, cpu_, timeout_, env_, command_});
        req["method"] = request.method;
        req["params"] = request.params;
        if (!call_timeout_.empty()) req["call_timeout"] = call_timeout_;
        client.send(req);
        nlohmann::json result;
        try {
            result = client.result(req["id"]);
        } catch (const Error& e) {
            write_report(e.to_json());
            throw;
        }
        write_report(result.value("report", nlohmann::json::object()));
        std::cout << result.value("outcome", nlohmann::json::object()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                  << "\n" << std::flush;
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

    std::string policy_file_, policy_dir_, method_, tool_, args_, uri_, prompt_, call_timeout_;
    std::string memory_, pids_, cpu_, timeout_, user_, report_, cgroup_root_, audit_file_;
    std::string state_dir_ = kDefaultStateDir;
    std::string agent_;
    std::vector<std::string> env_, command_;
    bool allow_degraded_ = false;
};

}  // namespace

std::unique_ptr<Command> make_call_command() { return std::make_unique<CallCommand>(); }

}  // namespace mcpwarden
