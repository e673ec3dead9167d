// SPDX-License-Identifier: Apache-2.0
// The MCP policy proxy's protocol logic, independent of file descriptors: it sees every line
// the client and the server send, decides what passes, and produces what each side receives.
// Input limits, tool filters, per-call deadlines, truncation and the structured errors of
// DESIGN.md ("Errors users see") all live here; McpProxy and McpCall (mcp_proxy.h) connect it
// to pipes and to the sandbox.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"
#include "mcp_framer.h"
#include "mcp_json.h"
#include "policy.h"

namespace mcpwarden {

// The policy's `mcp:` section with every default filled in.
struct McpConfig {
    std::chrono::milliseconds call_timeout{60000};
    std::map<std::string, std::chrono::milliseconds> tool_timeouts;
    std::uint64_t max_message_bytes = 4u << 20;
    std::uint32_t max_depth = 64;
    std::uint64_t max_string_bytes = 1u << 20;
    std::uint64_t max_array_length = 100000;
    std::uint64_t max_content_chars = 100000;
    std::uint64_t max_result_bytes = 8u << 20;
    std::vector<std::string> tools_allow;  // globs; empty = every tool
    std::vector<std::string> tools_deny;
    // Requests that get a deadline. `mcpwarden call` times every request it makes.
    std::set<std::string> timed_methods{"tools/call", "resources/read", "prompts/get"};
    bool time_every_request = false;
    // Requests in flight at once; the proxy stops reading the client at this many.
    std::size_t max_pending = 1024;

    static McpConfig from_policy(const McpLimits& limits);
    // nullopt = allowed; otherwise why not ("matches deny pattern 'delete_*'").
    std::optional<std::string> tool_refusal(const std::string& tool) const;
    std::chrono::milliseconds timeout_for(const std::string& method, const std::string& tool) const;
    bool filters_tools() const { return !tools_deny.empty() || !tools_allow.empty(); }
};

// JSON-RPC error codes the proxy answers with. Codes of its own lie outside -32768..-32000,
// as the MCP specification asks of implementation-local errors; `error.data.kind` names the
// error in mcpwarden's vocabulary either way.
namespace mcp_code {
constexpr int parse_error = -32700;      // not JSON, or not UTF-8 (kind input_invalid)
constexpr int invalid_request = -32600;  // not a JSON-RPC object, a batch, a bad id (input_invalid)
constexpr int input_too_large = -31001;
constexpr int tool_denied = -31002;
constexpr int call_timeout = -31003;
constexpr int result_too_large = -31004;
constexpr int result_invalid = -31005;
constexpr int memory_exceeded = -31006;
constexpr int pids_exceeded = -31007;
constexpr int timeout = -31008;
constexpr int server_exited = -31009;
constexpr int egress_refused = -31010;  // the server did not start: the policy refused its network
int for_kind(ErrorKind kind);
}  // namespace mcp_code

// Prefix of the keys mcpwarden adds to `result._meta`.
inline constexpr const char* kMetaPrefix = "mcpwarden/";

struct McpStats {
    std::uint64_t client_messages = 0, server_messages = 0;
    std::uint64_t requests = 0;         // client requests forwarded
    std::uint64_t rejected = 0;         // client messages refused (limits, malformed, denied)
    std::uint64_t tool_denied = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t truncated = 0;
    std::uint64_t results_too_large = 0;
    std::uint64_t dropped_late = 0;      // responses to requests no longer pending
    std::uint64_t dropped_progress = 0;  // progress for requests no longer pending
    std::uint64_t server_invalid = 0;    // server lines that were not JSON-RPC
    std::uint64_t failed_at_end = 0;     // pending requests answered when the sandbox ended
    std::uint64_t nested_cancelled = 0;  // server->client requests cancelled with their call
    nlohmann::json to_json() const;
};

// Counts Unicode code points of UTF-8 text, and cuts it after `chars` of them.
std::uint64_t utf8_chars(std::string_view text);
std::size_t utf8_prefix_bytes(std::string_view text, std::uint64_t chars);

class McpSession {
public:
    using Clock = std::chrono::steady_clock;
    struct Io {
        std::function<void(std::string_view)> to_client;  // one message, no newline
        std::function<void(std::string_view)> to_server;
        std::function<std::uint64_t()> egress_denied;  // total so far; may be empty
        std::function<std::uint64_t()> dns_refused;    // total so far; may be empty
    };

    McpSession(McpConfig config, Io io);

    // Deadlines: every request the policy times (call_timeout, tool_timeouts) has one, and its
    // clock is stopped while a server->client request of it is pending (time the client spends
    // answering an elicitation or a sampling request is not the server's).
    void client_line(std::string_view line, Clock::time_point now);
    void client_oversized(const LineFramer::Oversized& o, Clock::time_point now);
    void server_line(std::string_view line, Clock::time_point now);
    // Optional: the bytes of the server line in progress, scanned as they arrive, so that
    // server_line() of a long line does not scan it again.
    void server_piece(std::string_view bytes);
    void server_oversized(const LineFramer::Oversized& o, Clock::time_point now);
    // Answers requests whose deadline passed (and cancels them at the server).
    void expire(Clock::time_point now);
    std::optional<Clock::time_point> next_deadline() const;
    // The sandbox ended: every request still pending gets `kind` (memory_exceeded, ...).
    void fail_pending(ErrorKind kind, const std::string& message, const nlohmann::json& details,
                      Clock::time_point now);

    // The server has answered a request (its handshake, for a legacy client) yet.
    bool server_answered() const { return server_answered_; }
    // A handshake request (initialize, server/discover) is pending.
    bool handshake_pending() const;
    // Answers the pending handshake requests with `error` (the server will not answer them:
    // the policy refused what it needs to start). Returns how many.
    std::size_t fail_handshake(const Error& error, Clock::time_point now);

    std::size_t pending() const { return pending_.size(); }
    const McpStats& stats() const { return stats_; }
    const McpConfig& config() const { return config_; }

private:
    struct Pending {
        std::string raw_id;  // as the client wrote it, echoed in our replies
        std::string method;
        std::string target;  // tool name, resource URI or prompt name
        std::optional<std::string> progress_token;  // canonical
        Clock::time_point started;
        std::optional<Clock::time_point> deadline;
        std::chrono::milliseconds timeout{0};
        std::uint64_t egress_at_start = 0, dns_at_start = 0;
        std::uint64_t seq = 0;  // arrival order
        // Server->client requests of this call still pending (an elicitation the user is
        // answering, sampling): the call's clock is stopped meanwhile, with `left` to go.
        int nested = 0;
        std::optional<Clock::duration> left;
    };
    // A server->client request, and the client requests it may belong to: stdio carries no
    // link between them, so it is counted against every request pending when it was sent.
    struct ServerRequest {
        std::string raw_id;
        std::vector<std::string> calls;  // canonical ids
    };

    std::uint64_t egress_now() const { return io_.egress_denied ? io_.egress_denied() : 0; }
    std::uint64_t dns_now() const { return io_.dns_refused ? io_.dns_refused() : 0; }
    void reply_error(const std::optional<std::string>& raw_id, int code, const Error& error);
    void reply_error_to_server(const std::string& raw_id, int code, const Error& error);
    // Removes a pending request. Its server->client requests that belong to no other request
    // are cancelled towards the client when `cancel_nested` (the call was cancelled, timed out
    // or failed: nobody waits for their answers any more).
    Pending take(const std::string& canonical, bool cancel_nested = true);
    void server_request_done(const std::string& canonical, Clock::time_point now);
    nlohmann::json request_figures(const Pending& p, Clock::time_point now) const;
    void client_request(std::string_view line, const nlohmann::json& msg, const JsonEnvelope& env,
                        Clock::time_point now);
    void server_response(std::string_view line, const JsonEnvelope& env, Clock::time_point now);
    bool truncate(const std::string& method, nlohmann::ordered_json& result);
    // In place on the raw response line: the refused tools cut out of result.tools, and
    // members added to result._meta; false when nothing changed.
    bool filter_tools(std::string& text);
    static bool add_meta(std::string& text, const std::string& members);

    McpConfig config_;
    Io io_;
    JsonScanner client_scan_, server_scan_;
    bool server_prescanned_ = false;
    std::unordered_map<std::string, Pending> pending_;  // by canonical id
    std::set<std::pair<Clock::time_point, std::string>> deadlines_;
    std::unordered_map<std::string, std::string> progress_;  // canonical token -> canonical id
    std::unordered_map<std::string, ServerRequest> server_pending_;  // by canonical id
    McpStats stats_;
    std::uint64_t seq_ = 0;
    bool server_answered_ = false;
};

// A JSON-RPC error response; the id is left out when unknown (never null: SDK clients reject
// `"id": null`).
std::string jsonrpc_error(const std::optional<std::string>& raw_id, int code, const Error& error);

}  // namespace mcpwarden
