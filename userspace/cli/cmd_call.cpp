// SPDX-License-Identifier: Apache-2.0
// mcpwarden call: one MCP request to a server started in a fresh sandbox, one JSON object out.
#include <sys/prctl.h>

#include <iostream>

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
        flags_.define_policy(*app_);
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
        flags_.define_sandbox(*app_, "Wall-clock limit of the whole sandbox, as 30s, 10m or 1h");
        app_->add_option("command", flags_.command,
                         "The server command and its arguments: mcpwarden's options end at the "
                         "first argument that is not one of them (a -- before it is accepted too)")
            ->required();
        app_->footer(
            "Exit status: 0 result; 1 result with isError (the tool failed); 2 the server answered "
            "with a JSON-RPC error; 65 input refused (input_too_large, input_invalid); 69 the "
            "server ended before answering, or never answered its handshake after the policy "
            "refused its network (egress_denied); 76 the answer was not JSON-RPC; 77 tool denied by the "
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
        flags_.open_report();
        if (auto client = agent_for_cli(flags_.agent)) return through_agent(*client, request);
        RunOptions opts = flags_.run_options();
        std::string why;
        McpConfig config = McpConfig::from_policy(opts.policy.mcp);
        if (!call_timeout_.empty()) {
            auto v = parse_duration(call_timeout_, &why);
            if (!v || v->count() <= 0)
                throw Error(ErrorKind::usage, "--call-timeout " + call_timeout_ + ": " + (why.empty() ? "must be longer than 0" : why));
            config.call_timeout = *v;
            config.tool_timeouts.clear();
        }

        ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        Sandbox sandbox(opts);
        sandbox.add_extension(std::make_shared<EgressExtension>(sandbox.options().policy, false,
                                                                make_audit_logger(flags_.audit_file)));
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
        auto req = flags_.agent_request("call");
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

    void write_report(const nlohmann::json& j) const { flags_.write_report(j); }

    SandboxFlags flags_;
    std::string method_, tool_, args_, uri_, prompt_, call_timeout_;
};

}  // namespace

std::unique_ptr<Command> make_call_command() { return std::make_unique<CallCommand>(); }

}  // namespace mcpwarden
