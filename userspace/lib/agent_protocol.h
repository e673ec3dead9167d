// SPDX-License-Identifier: Apache-2.0
// The agent's API (docs/api.md): newline-delimited JSON on a Unix stream socket. This part is
// pure: one request line in, a checked request or an error out (no I/O, no globals written),
// so it can be fuzzed and unit-tested. The server (agent_server.h) dispatches on `op`.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"
#include "mcp_proxy.h"
#include "policy.h"

namespace mcpwarden {

inline constexpr int kApiVersion = 1;

// The type a request field must have.
enum class ApiField { string, integer, boolean, object, string_list, string_map, any };

struct ApiOp {
    std::string name;
    std::map<std::string, ApiField> required;
    std::map<std::string, ApiField> optional;
};

// Every op the agent knows, with the fields each takes (besides v, id and op). New ops are
// added here and get a handler in Agent's dispatch table.
const std::vector<ApiOp>& api_ops();
const ApiOp* find_api_op(std::string_view name);

struct ApiRequest {
    int v = kApiVersion;
    nlohmann::json id;       // echoed in every answer: a number, a string, or null when absent
    std::string op;
    nlohmann::json params = nlohmann::json::object();  // every field but v, id and op
};

// A request line without its "\n". On a problem: nullopt and `error` = {kind, message, ...}
// (input_invalid, input_too_large), `id` = the request's id when it could be read.
struct ApiParse {
    std::optional<ApiRequest> request;
    nlohmann::json error;
    nlohmann::json id;
};
ApiParse parse_api_request(std::string_view line, std::size_t max_bytes);

// What create and call ask for.
struct SandboxRequest {
    enum class Stdio { pass, returned, null };
    std::string policy;
    std::vector<std::string> command;
    std::vector<std::string> env;  // NAME=VALUE
    std::map<std::string, std::string> source_env;  // the caller's environment (policy env.pass)
    Limits limits;                 // asked; only lower than the policy's
    Stdio stdio = Stdio::pass;
    bool mcp = false;              // relay as MCP (also when the policy has an mcp section)
    bool keep = false;             // create: the sandbox outlives the connection that made it
};

// The checked fields of create and call (Error(input_invalid) on a bad value).
SandboxRequest sandbox_request(const ApiRequest& request);
// call's MCP request and its deadline override.
struct ApiCall {
    CallRequest call;
    std::optional<std::chrono::milliseconds> call_timeout;
};
ApiCall call_request(const ApiRequest& request);

// The signal of a kill request (default SIGTERM): 1..64, or Error(input_invalid) naming the
// field (a number beyond an int is refused, not truncated).
int kill_signal(const ApiRequest& request);

// Answers: {"v":1,"id":ID,"ok":true,"result":{...}}, {"v":1,"id":ID,"ok":false,"error":{...}};
// lifecycle messages of a create: {"v":1,"id":ID,"event":"queued"|"started",...}.
nlohmann::json api_result(const nlohmann::json& id, nlohmann::json result);
nlohmann::json api_error(const nlohmann::json& id, nlohmann::json error);
nlohmann::json api_error(const nlohmann::json& id, const Error& error);
nlohmann::json api_event(const nlohmann::json& id, const std::string& event, nlohmann::json fields = nlohmann::json::object());

}  // namespace mcpwarden
