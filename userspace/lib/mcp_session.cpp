// SPDX-License-Identifier: Apache-2.0
#include "mcp_session.h"

#include <fnmatch.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "units.h"

namespace mcpwarden {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// Server messages are not input-limited, but their nesting is bounded before they are parsed
// into a tree (parsing recurses).
constexpr std::uint32_t kServerMaxDepth = 512;

bool is_content_method(const std::string& m) {
    return m == "tools/call" || m == "resources/read" || m == "prompts/get";
}

std::string ms_text(std::chrono::milliseconds d) { return format_duration(d); }

std::optional<std::string> canonical_of(const json& id) {
    if (id.is_string() || id.is_number_integer()) return id.dump();
    return std::nullopt;
}

std::string limit_name(JsonViolation v) {
    switch (v) {
        case JsonViolation::depth: return "max_depth";
        case JsonViolation::string_bytes: return "max_string_bytes";
        case JsonViolation::array_length: return "max_array_length";
        default: return "";
    }
}

}  // namespace

namespace mcp_code {
int for_kind(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::input_too_large: return input_too_large;
        case ErrorKind::input_invalid: return invalid_request;
        case ErrorKind::tool_denied: return tool_denied;
        case ErrorKind::call_timeout: return call_timeout;
        case ErrorKind::result_too_large: return result_too_large;
        case ErrorKind::result_invalid: return result_invalid;
        case ErrorKind::memory_exceeded: return memory_exceeded;
        case ErrorKind::pids_exceeded: return pids_exceeded;
        case ErrorKind::timeout: return timeout;
        case ErrorKind::egress_denied: return egress_refused;
        default: return server_exited;
    }
}
}  // namespace mcp_code

McpConfig McpConfig::from_policy(const McpLimits& l) {
    McpConfig c;
    if (l.call_timeout) c.call_timeout = *l.call_timeout;
    c.tool_timeouts = l.tool_timeouts;
    if (l.max_message_bytes) c.max_message_bytes = *l.max_message_bytes;
    if (l.max_depth) c.max_depth = *l.max_depth;
    if (l.max_string_bytes) c.max_string_bytes = *l.max_string_bytes;
    if (l.max_array_length) c.max_array_length = *l.max_array_length;
    if (l.max_content_chars) c.max_content_chars = *l.max_content_chars;
    if (l.max_result_bytes) c.max_result_bytes = *l.max_result_bytes;
    c.tools_allow = l.tools_allow;
    c.tools_deny = l.tools_deny;
    // "allow: ['*']" is the same as no allow list.
    if (std::find(c.tools_allow.begin(), c.tools_allow.end(), "*") != c.tools_allow.end()) c.tools_allow.clear();
    return c;
}

std::optional<std::string> McpConfig::tool_refusal(const std::string& tool) const {
    for (const auto& pattern : tools_deny) {
        if (::fnmatch(pattern.c_str(), tool.c_str(), 0) == 0) return "matches the deny pattern '" + pattern + "'";
    }
    if (tools_allow.empty()) return std::nullopt;
    for (const auto& pattern : tools_allow) {
        if (::fnmatch(pattern.c_str(), tool.c_str(), 0) == 0) return std::nullopt;
    }
    return std::string("matches no allow pattern");
}

std::chrono::milliseconds McpConfig::timeout_for(const std::string& method, const std::string& tool) const {
    if (method == "tools/call") {
        auto it = tool_timeouts.find(tool);
        if (it != tool_timeouts.end()) return it->second;
    }
    return call_timeout;
}

json McpStats::to_json() const {
    return {{"client_messages", client_messages}, {"server_messages", server_messages},
            {"requests", requests},               {"rejected", rejected},
            {"tool_denied", tool_denied},         {"call_timeouts", timeouts},
            {"truncated", truncated},             {"results_too_large", results_too_large},
            {"dropped_late_responses", dropped_late}, {"dropped_progress", dropped_progress},
            {"server_invalid_lines", server_invalid}, {"failed_at_end", failed_at_end},
            {"nested_requests_cancelled", nested_cancelled}};
}

std::uint64_t utf8_chars(std::string_view text) {
    std::uint64_t n = 0;
    for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

std::size_t utf8_prefix_bytes(std::string_view text, std::uint64_t chars) {
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
            if (seen == chars) return i;
            ++seen;
        }
    }
    return text.size();
}

std::string jsonrpc_error(const std::optional<std::string>& raw_id, int code, const Error& error) {
    json err = {{"code", code}, {"message", std::string("mcpwarden: ") + error.what()}, {"data", error.to_json()}};
    std::string out = R"({"jsonrpc":"2.0",)";
    if (raw_id) out += "\"id\":" + *raw_id + ",";
    out += "\"error\":" + err.dump(-1, ' ', false, json::error_handler_t::replace) + "}";
    return out;
}

McpSession::McpSession(McpConfig config, Io io)
    : config_(std::move(config)),
      io_(std::move(io)),
      client_scan_(JsonLimits{config_.max_depth, config_.max_string_bytes, config_.max_array_length}),
      server_scan_(JsonLimits{kServerMaxDepth, 0, 0}) {}

void McpSession::reply_error(const std::optional<std::string>& raw_id, int code, const Error& error) {
    ++stats_.rejected;
    io_.to_client(jsonrpc_error(raw_id, code, error));
}

void McpSession::reply_error_to_server(const std::string& raw_id, int code, const Error& error) {
    io_.to_server(jsonrpc_error(raw_id, code, error));
}

McpSession::Pending McpSession::take(const std::string& canonical, bool cancel_nested) {
    auto it = pending_.find(canonical);
    Pending p = std::move(it->second);
    pending_.erase(it);
    if (p.deadline) deadlines_.erase({*p.deadline, canonical});
    if (p.progress_token) progress_.erase(*p.progress_token);
    if (p.nested == 0) return p;
    for (auto s = server_pending_.begin(); s != server_pending_.end();) {
        auto& calls = s->second.calls;
        calls.erase(std::remove(calls.begin(), calls.end(), canonical), calls.end());
        if (!calls.empty() || !cancel_nested) {
            ++s;
            continue;
        }
        ++stats_.nested_cancelled;
        std::string reason = "mcpwarden: " + p.method + (p.target.empty() ? "" : " " + p.target) + " ended";
        io_.to_client(R"({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":)" + s->second.raw_id +
                      ",\"reason\":" + json(reason).dump(-1, ' ', false, json::error_handler_t::replace) + "}}");
        s = server_pending_.erase(s);
    }
    return p;
}

void McpSession::server_request_done(const std::string& canonical, Clock::time_point now) {
    auto s = server_pending_.find(canonical);
    if (s == server_pending_.end()) return;
    for (const auto& c : s->second.calls) {
        auto it = pending_.find(c);
        if (it == pending_.end()) continue;
        Pending& p = it->second;
        if (--p.nested > 0 || !p.left) continue;
        p.deadline = now + *p.left;
        p.left.reset();
        deadlines_.insert({*p.deadline, c});
    }
    server_pending_.erase(s);
}

json McpSession::request_figures(const Pending& p, Clock::time_point now) const {
    json j = {{"method", p.method},
              {"elapsed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - p.started).count()}};
    if (!p.target.empty()) j[p.method == "tools/call" ? "tool" : p.method == "resources/read" ? "uri" : "name"] = p.target;
    std::uint64_t denied = egress_now() - p.egress_at_start;
    if (denied > 0) j["egress_denied"] = denied;
    std::uint64_t refused = dns_now() - p.dns_at_start;
    if (refused > 0) j["dns_refused"] = refused;
    return j;
}

void McpSession::client_line(std::string_view line, Clock::time_point now) {
    ++stats_.client_messages;
    client_scan_.reset();
    client_scan_.feed(line);
    JsonViolation v = client_scan_.finish();
    if (v == JsonViolation::syntax || v == JsonViolation::utf8) {
        // JSON-RPC: the id of a message that does not parse is unknown (left out).
        reply_error(std::nullopt, mcp_code::parse_error,
                    Error(ErrorKind::input_invalid,
                          std::string(v == JsonViolation::utf8 ? "message is not valid UTF-8: " : "message is not valid JSON: ") +
                              client_scan_.reason() + " at byte " + std::to_string(client_scan_.offset()),
                          {{"reason", client_scan_.reason()}, {"offset", client_scan_.offset()}}));
        return;
    }
    const JsonEnvelope& env = client_scan_.envelope();
    if (v != JsonViolation::none) {
        // The scan stopped at the violation: look at the whole line for the members.
        auto whole = recover_envelope(line);
        auto& id = whole.id;
        std::string name = limit_name(v);
        Error e(ErrorKind::input_too_large,
                "message exceeds " + name + " (" + std::to_string(client_scan_.limit()) + "; found " +
                    std::to_string(client_scan_.observed()) + "); it was not sent to the server",
                {{"limit_name", name}, {"limit", client_scan_.limit()}, {"observed", client_scan_.observed()}});
        if (env.is_object && (whole.has_result || whole.has_error) && !whole.has_method && id) {
            // The client's answer to a server request: the server gets the error instead.
            ++stats_.rejected;
            spdlog::warn("mcp: client response {} refused: {}", *id, e.what());
            reply_error_to_server(*id, mcp_code::input_too_large, e);
            return;
        }
        if (env.is_object && whole.has_method && !whole.has_id) {
            ++stats_.rejected;
            spdlog::warn("mcp: client notification dropped: {}", e.what());
            return;
        }
        reply_error(id, mcp_code::input_too_large, e);
        return;
    }
    if (!env.is_object) {
        bool batch = !line.empty() && line.find_first_not_of(" \t\r") != std::string_view::npos &&
                     line[line.find_first_not_of(" \t\r")] == '[';
        reply_error(std::nullopt, mcp_code::invalid_request,
                    Error(ErrorKind::input_invalid,
                          batch ? "JSON-RPC batches are not supported (MCP removed them in 2025-06-18); send one message per line"
                                : "a JSON-RPC message must be a JSON object"));
        return;
    }
    json msg;
    try {
        msg = json::parse(line);
    } catch (const json::exception& e) {
        reply_error(std::nullopt, mcp_code::parse_error, Error(ErrorKind::input_invalid, std::string("message is not valid JSON: ") + e.what()));
        return;
    }
    std::optional<std::string> raw_id;
    if (env.has_id && !env.id_too_long) raw_id = env.id;
    if (msg.contains("method")) {
        if (!msg["method"].is_string()) {
            reply_error(msg.contains("id") && canonical_of(msg["id"]) ? raw_id : std::nullopt, mcp_code::invalid_request,
                        Error(ErrorKind::input_invalid, "\"method\" must be a string"));
            return;
        }
        if (msg.contains("id")) {
            client_request(line, msg, env, now);
            return;
        }
        // A notification. A cancelled request's late response is dropped like a timed-out one.
        if (msg["method"] == "notifications/cancelled" && msg.contains("params") && msg["params"].is_object() &&
            msg["params"].contains("requestId")) {
            if (auto c = canonical_of(msg["params"]["requestId"]); c && pending_.count(*c)) take(*c);
        }
        io_.to_server(line);
        return;
    }
    if (msg.contains("id") && (msg.contains("result") || msg.contains("error"))) {
        // The client's answer to a server->client request (the other id space).
        if (auto c = canonical_of(msg["id"])) {
            if (server_pending_.count(*c)) server_request_done(*c, now);
            else spdlog::debug("mcp: client answered unknown server request {}", *c);
        }
        io_.to_server(line);
        return;
    }
    reply_error(msg.contains("id") && canonical_of(msg["id"]) ? raw_id : std::nullopt, mcp_code::invalid_request,
                Error(ErrorKind::input_invalid, "not a JSON-RPC request, notification or response"));
}

void McpSession::client_request(std::string_view line, const json& msg, const JsonEnvelope& env,
                                Clock::time_point now) {
    const json& id = msg["id"];
    auto canonical = canonical_of(id);
    if (!canonical || env.id_too_long) {
        reply_error(std::nullopt, mcp_code::invalid_request,
                    Error(ErrorKind::input_invalid, "a request id must be a string or an integer (of at most 1024 bytes)"));
        return;
    }
    const std::string& raw_id = env.id;
    if (pending_.count(*canonical)) {
        reply_error(raw_id, mcp_code::invalid_request,
                    Error(ErrorKind::input_invalid, "request id " + raw_id + " is already in use by a pending request"));
        return;
    }
    Pending p;
    p.raw_id = raw_id;
    p.method = msg["method"].get<std::string>();
    p.started = now;
    const json empty = json::object();
    const json& params = msg.contains("params") && msg["params"].is_object() ? msg["params"] : empty;
    if (p.method == "tools/call" && params.contains("name") && params["name"].is_string()) {
        p.target = params["name"].get<std::string>();
        if (auto why = config_.tool_refusal(p.target)) {
            ++stats_.tool_denied;
            reply_error(raw_id, mcp_code::tool_denied,
                        Error(ErrorKind::tool_denied, "tool '" + p.target + "' is not allowed by the policy (" + *why + ")",
                              {{"tool", p.target}, {"rule", *why}}));
            return;
        }
    } else if (p.method == "resources/read" && params.contains("uri") && params["uri"].is_string()) {
        p.target = params["uri"].get<std::string>();
    } else if (p.method == "prompts/get" && params.contains("name") && params["name"].is_string()) {
        p.target = params["name"].get<std::string>();
    }
    if (params.contains("_meta") && params["_meta"].is_object() && params["_meta"].contains("progressToken")) {
        if (auto t = canonical_of(params["_meta"]["progressToken"])) {
            p.progress_token = *t;
            progress_[*t] = *canonical;
        }
    }
    if (config_.time_every_request || config_.timed_methods.count(p.method)) {
        p.timeout = config_.timeout_for(p.method, p.target);
        p.deadline = now + p.timeout;
        deadlines_.insert({*p.deadline, *canonical});
    }
    p.egress_at_start = egress_now();
    p.dns_at_start = dns_now();
    p.seq = ++seq_;
    pending_.emplace(*canonical, std::move(p));
    ++stats_.requests;
    io_.to_server(line);
}

void McpSession::client_oversized(const LineFramer::Oversized& o, Clock::time_point) {
    ++stats_.client_messages;
    auto id = recover_id(o.head);
    if (!id) id = recover_id_from_tail(o.tail);
    JsonScanner head;
    head.feed(o.head);
    const auto& env = head.envelope();
    Error e(ErrorKind::input_too_large,
            "message of " + std::to_string(o.bytes) + " bytes exceeds max_message_bytes (" +
                std::to_string(config_.max_message_bytes) + "); it was not sent to the server",
            {{"limit_name", "max_message_bytes"}, {"limit", config_.max_message_bytes}, {"observed", o.bytes}});
    if (env.is_object && (env.has_result || env.has_error) && !env.has_method && id) {
        ++stats_.rejected;
        spdlog::warn("mcp: client response {} refused: {}", *id, e.what());
        reply_error_to_server(*id, mcp_code::input_too_large, e);
        return;
    }
    reply_error(id, mcp_code::input_too_large, e);
}

void McpSession::server_piece(std::string_view bytes) {
    if (!server_prescanned_) {
        server_scan_.reset();
        server_prescanned_ = true;
    }
    server_scan_.feed(bytes);
}

void McpSession::server_line(std::string_view line, Clock::time_point now) {
    ++stats_.server_messages;
    if (!server_prescanned_) {
        server_scan_.reset();
        server_scan_.feed(line);
    }
    server_prescanned_ = false;  // (a trailing "\r" the framer removed is JSON whitespace)
    JsonViolation v = server_scan_.finish();
    const JsonEnvelope& env = server_scan_.envelope();
    if (v != JsonViolation::none || !env.is_object) {
        ++stats_.server_invalid;
        std::string why = v == JsonViolation::none ? "not a JSON object" : server_scan_.reason();
        spdlog::warn("mcp: the server wrote a line that is not JSON-RPC ({}, {} bytes): dropped", why, line.size());
        // When it names a pending request, answer that request now rather than at its deadline.
        auto id = recover_id(line);
        if (id && !env.has_method) {
            if (auto c = canonical_id(*id); c && pending_.count(*c)) {
                Pending p = take(*c, false);
                json figures = request_figures(p, now);
                figures["reason"] = why;
                io_.to_client(jsonrpc_error(p.raw_id, mcp_code::result_invalid,
                                            Error(ErrorKind::result_invalid,
                                                  "the server answered " + p.method + " with a line that is not JSON-RPC (" + why + ")",
                                                  figures)));
            }
        }
        return;
    }
    if (env.has_method) {
        std::optional<std::string> c;
        if (env.has_id && !env.id_too_long) c = canonical_id(env.id);
        if (!env.method_is_string || (env.has_id && !c)) {
            // Clients reject these (an SDK client fails on "id": null): never forward them.
            ++stats_.server_invalid;
            spdlog::warn("mcp: the server wrote a request with an invalid method or id ({} bytes): dropped", line.size());
            return;
        }
        if (env.has_id) {
            // A server->client request (sampling, roots, elicitation, ping): its own id space.
            if (server_pending_.size() < config_.max_pending && !server_pending_.count(*c)) {
                ServerRequest r{env.id, {}};
                for (auto& [id, p] : pending_) {
                    r.calls.push_back(id);
                    if (++p.nested == 1 && p.deadline) {
                        p.left = *p.deadline - now;
                        deadlines_.erase({*p.deadline, id});
                        p.deadline.reset();
                    }
                }
                server_pending_.emplace(*c, std::move(r));
            }
            io_.to_client(line);
            return;
        }
        if (env.method == "notifications/progress" || env.method == "notifications/cancelled") {
            json msg = json::parse(line, nullptr, false);
            const json& params = msg.is_object() && msg.contains("params") ? msg["params"] : json();
            if (env.method == "notifications/progress") {
                std::optional<std::string> token;
                if (params.is_object() && params.contains("progressToken")) token = canonical_of(params["progressToken"]);
                if (!token || !progress_.count(*token)) {
                    // The request finished (timed out, cancelled, answered): nothing may follow it.
                    ++stats_.dropped_progress;
                    return;
                }
            } else if (params.is_object() && params.contains("requestId")) {
                if (auto c = canonical_of(params["requestId"])) server_request_done(*c, now);
            }
        }
        io_.to_client(line);
        return;
    }
    if (env.has_id && (env.has_result || env.has_error)) {
        server_response(line, env, now);
        return;
    }
    ++stats_.server_invalid;
    spdlog::warn("mcp: the server wrote a JSON object that is not JSON-RPC ({} bytes): dropped", line.size());
}

void McpSession::server_response(std::string_view line, const JsonEnvelope& env, Clock::time_point now) {
    auto canonical = env.id_too_long ? std::nullopt : canonical_id(env.id);
    if (!canonical || !pending_.count(*canonical)) {
        // Late (timed out or cancelled) or unknown: the client must not see it.
        ++stats_.dropped_late;
        spdlog::debug("mcp: dropped a response to {} (not pending)", env.id);
        return;
    }
    Pending p = take(*canonical, false);
    server_answered_ = true;
    std::uint64_t denied = egress_now() - p.egress_at_start;
    std::uint64_t refused = dns_now() - p.dns_at_start;
    bool filter = p.method == "tools/list" && config_.filters_tools();
    bool trunc = is_content_method(p.method) && config_.max_content_chars > 0 && line.size() > config_.max_content_chars;
    if (env.has_error || (!filter && !trunc && denied == 0 && refused == 0)) {
        io_.to_client(line);
        return;
    }
    // Everything mcpwarden does not change keeps the server's bytes: the tool filter and the
    // _meta figures are spliced into the line, and only a truncated result is re-serialised
    // (in the server's key order).
    std::string text(line);
    bool changed = false;
    if (filter) changed = filter_tools(text) || changed;
    if (trunc) {
        ordered_json msg = ordered_json::parse(text, nullptr, false);
        if (msg.is_discarded()) {
            // Valid JSON our parser cannot hold (a number beyond a double): it cannot be
            // truncated, so it does not pass.
            json figures = request_figures(p, now);
            figures["reason"] = "a number out of range";
            io_.to_client(jsonrpc_error(p.raw_id, mcp_code::result_invalid,
                                        Error(ErrorKind::result_invalid,
                                              "the server's answer to " + p.method + " could not be checked against the policy (a number out of range)",
                                              figures)));
            return;
        }
        if (msg.is_object() && msg.contains("result") && msg["result"].is_object() && truncate(p.method, msg["result"])) {
            // Rebuilt with the id exactly as the server wrote it (integers beyond 2^53 stay exact).
            text = R"({"jsonrpc":"2.0","id":)" + env.id + ",\"result\":" +
                   msg["result"].dump(-1, ' ', false, json::error_handler_t::replace) + "}";
            changed = true;
        }
    }
    std::string figures;
    if (denied > 0) figures = std::string("\"") + kMetaPrefix + "egress_denied\":" + std::to_string(denied);
    if (refused > 0)
        figures += (figures.empty() ? "\"" : ",\"") + std::string(kMetaPrefix) + "dns_refused\":" + std::to_string(refused);
    if (!figures.empty()) changed = add_meta(text, figures) || changed;
    io_.to_client(changed ? std::string_view(text) : line);
}

void McpSession::server_oversized(const LineFramer::Oversized& o, Clock::time_point now) {
    ++stats_.server_messages;
    server_prescanned_ = false;
    JsonScanner head;
    head.feed(o.head);
    const auto& env = head.envelope();
    auto id = recover_id(o.head);
    if (!id) id = recover_id_from_tail(o.tail);
    std::optional<std::string> c;
    if (id && !env.has_method) c = canonical_id(*id);
    if (!c || !pending_.count(*c)) {
        spdlog::warn("mcp: the server wrote a message of {} bytes, over max_result_bytes ({}): dropped", o.bytes,
                     config_.max_result_bytes);
        return;
    }
    Pending p = take(*c, false);
    ++stats_.results_too_large;
    json figures = request_figures(p, now);
    figures["limit_name"] = "max_result_bytes";
    figures["limit"] = config_.max_result_bytes;
    figures["observed"] = o.bytes;
    io_.to_client(jsonrpc_error(p.raw_id, mcp_code::result_too_large,
                                Error(ErrorKind::result_too_large,
                                      "the result of " + p.method + (p.target.empty() ? "" : " " + p.target) + " (" +
                                          std::to_string(o.bytes) + " bytes) exceeds max_result_bytes (" +
                                          std::to_string(config_.max_result_bytes) + ")",
                                      figures)));
}

bool McpSession::filter_tools(std::string& text) {
    auto result = json_member(text, json_value_at(text, 0), "result");
    if (!result) return false;
    auto tools = json_member(text, *result, "tools");
    if (!tools || text[tools->begin] != '[') return false;
    std::string kept;
    bool dropped = false;
    for (const JsonSpan& t : json_elements(text, *tools)) {
        // Only the name is parsed: the rest of the tool is kept as the server wrote it.
        if (auto name = json_member(text, t, "name")) {
            json n = json::parse(std::string_view(text).substr(name->begin, name->end - name->begin), nullptr, false);
            if (n.is_string() && config_.tool_refusal(n.get<std::string>())) {
                dropped = true;
                continue;
            }
        }
        if (!kept.empty()) kept += ',';
        kept.append(text, t.begin, t.end - t.begin);
    }
    if (dropped) text.replace(tools->begin + 1, tools->end - tools->begin - 2, kept);
    return dropped;
}

bool McpSession::add_meta(std::string& text, const std::string& members) {
    auto result = json_member(text, json_value_at(text, 0), "result");
    if (!result || text[result->begin] != '{') return false;
    std::size_t at;
    std::string insert;
    auto meta = json_member(text, *result, "_meta");
    auto empty = [&](JsonSpan o) { return json_value_at(text, o.begin + 1).begin == o.end - 1; };
    if (meta && text[meta->begin] == '{') {
        at = meta->begin + 1;
        insert = members + (empty(*meta) ? "" : ",");
    } else if (!meta) {
        at = result->begin + 1;
        insert = "\"_meta\":{" + members + "}" + (empty(*result) ? "" : ",");
    } else {
        return false;  // a _meta that is not an object is the server's business
    }
    text.insert(at, insert);
    return true;
}

bool McpSession::truncate(const std::string& method, ordered_json& result) {
    // The text fields of the result, in order: content blocks of a tool result, contents of a
    // resource, the message content of a prompt (and text of embedded resources in them).
    std::vector<ordered_json*> texts;
    auto block = [&](ordered_json& b) {
        if (!b.is_object()) return;
        if (b.value("type", "") == "text" && b.contains("text") && b["text"].is_string()) texts.push_back(&b["text"]);
        if (b.value("type", "") == "resource" && b.contains("resource") && b["resource"].is_object() &&
            b["resource"].contains("text") && b["resource"]["text"].is_string())
            texts.push_back(&b["resource"]["text"]);
    };
    if (method == "tools/call" && result.contains("content") && result["content"].is_array()) {
        for (auto& b : result["content"]) block(b);
    } else if (method == "resources/read" && result.contains("contents") && result["contents"].is_array()) {
        for (auto& c : result["contents"]) {
            if (c.is_object() && c.contains("text") && c["text"].is_string()) texts.push_back(&c["text"]);
        }
    } else if (method == "prompts/get" && result.contains("messages") && result["messages"].is_array()) {
        for (auto& m : result["messages"]) {
            if (m.is_object() && m.contains("content")) block(m["content"]);
        }
    }
    // structuredContent usually repeats the text: its strings (in document order) get a budget
    // of the same size, so that the bound holds for what a client shows or hands to a model.
    // They are cut without a note, which keeps a string a string for the tool's outputSchema.
    std::vector<ordered_json*> structured;
    std::vector<ordered_json*> todo;
    if (method == "tools/call" && result.contains("structuredContent")) todo.push_back(&result["structuredContent"]);
    while (!todo.empty()) {
        ordered_json* v = todo.back();
        todo.pop_back();
        if (v->is_string()) {
            structured.push_back(v);
        } else if (v->is_structured()) {
            // Pushed in reverse so that they are visited in document order.
            std::vector<ordered_json*> children;
            for (auto& c : *v) children.push_back(&c);
            todo.insert(todo.end(), children.rbegin(), children.rend());
        }
    }
    auto chars = [](const std::vector<ordered_json*>& v) {
        std::uint64_t n = 0;
        for (auto* t : v) n += utf8_chars(t->get_ref<const std::string&>());
        return n;
    };
    const std::uint64_t max = config_.max_content_chars;
    const std::uint64_t total = chars(texts), structured_total = chars(structured);
    if (total <= max && structured_total <= max) return false;
    // One budget for the whole result; the text that ends it is cut on a character boundary
    // and (for the content) says so, so a model reading it knows there was more.
    auto cut = [max](const std::vector<ordered_json*>& v, const std::string& note) {
        std::uint64_t left = max;
        bool noted = false;
        for (auto* t : v) {
            auto& s = t->get_ref<std::string&>();
            std::uint64_t n = utf8_chars(s);
            if (n <= left) {
                left -= n;
                continue;
            }
            s.resize(utf8_prefix_bytes(s, left));
            left = 0;
            if (!noted) {
                s += note;
                noted = true;
            }
        }
    };
    if (total > max)
        cut(texts, "\n[mcpwarden: output truncated to " + std::to_string(max) + " of " + std::to_string(total) + " characters]");
    if (structured_total > max) cut(structured, "");
    if (!result.contains("_meta") || !result["_meta"].is_object()) result["_meta"] = json::object();
    auto& meta = result["_meta"];
    meta[std::string(kMetaPrefix) + "truncated"] = true;
    meta[std::string(kMetaPrefix) + "max_content_chars"] = max;
    meta[std::string(kMetaPrefix) + "total_content_chars"] = total;
    if (structured_total > max) {
        meta[std::string(kMetaPrefix) + "structured_truncated"] = true;
        meta[std::string(kMetaPrefix) + "total_structured_chars"] = structured_total;
    }
    ++stats_.truncated;
    return true;
}

void McpSession::expire(Clock::time_point now) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        std::string c = deadlines_.begin()->second;
        Pending p = take(c);
        ++stats_.timeouts;
        json figures = request_figures(p, now);
        figures["timeout_ms"] = p.timeout.count();
        std::string what = p.method + (p.target.empty() ? "" : " " + p.target);
        spdlog::info("mcp: {} (id {}) timed out after {}", what, p.raw_id, ms_text(p.timeout));
        io_.to_client(jsonrpc_error(p.raw_id, mcp_code::call_timeout,
                                    Error(ErrorKind::call_timeout,
                                          what + " did not answer within " + ms_text(p.timeout) +
                                              "; it was cancelled (policy mcp.call_timeout / mcp.tool_timeouts)",
                                          figures)));
        json cancel = {{"jsonrpc", "2.0"},
                       {"method", "notifications/cancelled"},
                       {"params", {{"requestId", json::parse(p.raw_id)}, {"reason", "mcpwarden: call timeout of " + ms_text(p.timeout)}}}};
        io_.to_server(cancel.dump());
    }
}

bool McpSession::handshake_pending() const {
    for (const auto& [c, p] : pending_) {
        if (p.method == "initialize" || p.method == "server/discover") return true;
    }
    return false;
}

std::size_t McpSession::fail_handshake(const Error& error, Clock::time_point now) {
    std::vector<std::string> ids;
    for (const auto& [c, p] : pending_) {
        if (p.method == "initialize" || p.method == "server/discover") ids.push_back(c);
    }
    for (const auto& c : ids) {
        Pending p = take(c);
        json figures = error.details().is_object() ? error.details() : json::object();
        figures.update(request_figures(p, now));
        io_.to_client(jsonrpc_error(p.raw_id, mcp_code::for_kind(error.kind()), Error(error.kind(), error.what(), figures)));
    }
    return ids.size();
}

std::optional<McpSession::Clock::time_point> McpSession::next_deadline() const {
    if (deadlines_.empty()) return std::nullopt;
    return deadlines_.begin()->first;
}

void McpSession::fail_pending(ErrorKind kind, const std::string& message, const json& details, Clock::time_point now) {
    std::vector<std::pair<std::uint64_t, std::string>> order;
    for (const auto& [c, p] : pending_) order.push_back({p.seq, c});
    std::sort(order.begin(), order.end());
    for (const auto& [seq, c] : order) {
        Pending p = take(c);
        ++stats_.failed_at_end;
        json figures = details.is_object() ? details : json::object();
        json extra = request_figures(p, now);
        figures.update(extra);
        io_.to_client(jsonrpc_error(p.raw_id, mcp_code::for_kind(kind),
                                    Error(kind, message + " while " + p.method +
                                                    (p.target.empty() ? "" : " " + p.target) + " was pending",
                                          figures)));
    }
}

}  // namespace mcpwarden
