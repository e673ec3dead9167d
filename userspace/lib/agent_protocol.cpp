// SPDX-License-Identifier: Apache-2.0
#include "agent_protocol.h"

#include <cctype>

#include "policy_dir.h"
#include "units.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;
using F = ApiField;

constexpr int kMaxDepth = 16;  // requests are flat; this bounds work and stack on any input

// The sandbox fields create and call share.
std::map<std::string, ApiField> sandbox_optional(std::map<std::string, ApiField> more) {
    more.insert({{"env", F::string_list}, {"source_env", F::string_map}, {"limits", F::object}});
    return more;
}

std::string field_type(ApiField f) {
    switch (f) {
        case F::string: return "a string";
        case F::integer: return "an integer";
        case F::boolean: return "true or false";
        case F::object: return "an object";
        case F::string_list: return "a list of strings";
        case F::string_map: return "an object of strings";
        case F::any: return "any value";
    }
    return "?";
}

bool has_type(const json& v, ApiField f) {
    switch (f) {
        case F::string: return v.is_string();
        case F::integer: return v.is_number_integer();
        case F::boolean: return v.is_boolean();
        case F::object: return v.is_object();
        case F::string_list:
            if (!v.is_array()) return false;
            for (const auto& e : v)
                if (!e.is_string()) return false;
            return true;
        case F::string_map:
            if (!v.is_object()) return false;
            for (const auto& e : v)
                if (!e.is_string()) return false;
            return true;
        case F::any: return true;
    }
    return false;
}

// Nesting depth of JSON text (brackets outside strings); stops counting past the limit.
bool depth_within(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > limit) return false;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return true;
}

json invalid(const std::string& message, json extra = json::object()) {
    extra["kind"] = "input_invalid";
    extra["message"] = message;
    return extra;
}

bool env_name_ok(std::string_view name) {
    if (name.empty()) return false;
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    return !std::isdigit(static_cast<unsigned char>(name[0]));
}

}  // namespace

const std::vector<ApiOp>& api_ops() {
    static const std::vector<ApiOp> ops = {
        {"create", {{"policy", F::string}, {"command", F::string_list}},
         sandbox_optional({{"stdio", F::string}, {"mcp", F::boolean}, {"keep", F::boolean}})},
        {"call", {{"policy", F::string}, {"command", F::string_list}, {"method", F::string}},
         sandbox_optional({{"params", F::object}, {"call_timeout", F::string}})},
        {"list", {}, {}},
        {"inspect", {{"sandbox", F::string}}, {}},
        {"kill", {{"sandbox", F::string}}, {{"signal", F::integer}}},
        {"events", {}, {{"sandbox", F::string}}},
        {"reload", {}, {{"policy", F::string}}},
        {"attach", {{"cgroup", F::string}, {"policy", F::string}},
         {{"audit_only", F::boolean}, {"name", F::string}, {"container", F::string}, {"pid", F::integer}}},
        {"detach", {{"cgroup", F::string}}, {}},
    };
    return ops;
}

const ApiOp* find_api_op(std::string_view name) {
    for (const auto& op : api_ops())
        if (op.name == name) return &op;
    return nullptr;
}

ApiParse parse_api_request(std::string_view line, std::size_t max_bytes) {
    ApiParse out;
    if (line.size() > max_bytes) {
        out.error = {{"kind", "input_too_large"},
                     {"message", "the request is " + std::to_string(line.size()) + " bytes, over the agent's limit of " +
                                     std::to_string(max_bytes)},
                     {"limit_name", "max_request_bytes"}, {"limit", max_bytes}, {"observed", line.size()}};
        return out;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!depth_within(line, kMaxDepth)) {
        out.error = invalid("the request nests deeper than " + std::to_string(kMaxDepth) + " levels");
        return out;
    }
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded()) {
        out.error = invalid("the request is not JSON (one object per line, UTF-8)");
        return out;
    }
    if (!j.is_object()) {
        out.error = invalid("the request must be a JSON object");
        return out;
    }
    if (auto it = j.find("id"); it != j.end()) {
        if (it->is_number_integer() || it->is_string()) out.id = *it;
        else {
            out.error = invalid("id must be an integer or a string");
            return out;
        }
    }
    auto v = j.find("v");
    if (v == j.end() || !v->is_number_integer()) {
        out.error = invalid("the request needs \"v\": " + std::to_string(kApiVersion) + " (the API version)");
        return out;
    }
    if (*v != kApiVersion) {
        out.error = invalid("API version " + v->dump() + " is not supported; this agent speaks version " +
                                std::to_string(kApiVersion),
                            {{"supported", json::array({kApiVersion})}});
        return out;
    }
    auto op = j.find("op");
    if (op == j.end() || !op->is_string()) {
        out.error = invalid("the request needs \"op\" (a string)");
        return out;
    }
    const ApiOp* spec = find_api_op(op->get_ref<const std::string&>());
    if (!spec) {
        std::string known;
        for (const auto& o : api_ops()) known += (known.empty() ? "" : ", ") + o.name;
        out.error = invalid("unknown op " + op->dump() + " (known: " + known + ")");
        return out;
    }
    ApiRequest r;
    r.id = out.id;
    r.op = spec->name;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& key = it.key();
        if (key == "v" || key == "id" || key == "op") continue;
        auto req = spec->required.find(key);
        auto opt = spec->optional.find(key);
        if (req == spec->required.end() && opt == spec->optional.end()) {
            out.error = invalid("unknown field \"" + key + "\" for op " + r.op, {{"field", key}});
            return out;
        }
        ApiField type = req != spec->required.end() ? req->second : opt->second;
        if (!has_type(it.value(), type)) {
            out.error = invalid("field \"" + key + "\" must be " + field_type(type), {{"field", key}});
            return out;
        }
        r.params[key] = it.value();
    }
    for (const auto& [key, type] : spec->required) {
        if (!r.params.contains(key)) {
            out.error = invalid("op " + r.op + " needs field \"" + key + "\" (" + field_type(type) + ")", {{"field", key}});
            return out;
        }
    }
    out.request = std::move(r);
    return out;
}

SandboxRequest sandbox_request(const ApiRequest& request) {
    const json& p = request.params;
    auto bad = [](const std::string& message, const std::string& field) {
        return Error(ErrorKind::input_invalid, message, {{"field", field}});
    };
    SandboxRequest r;
    r.policy = p.at("policy").get<std::string>();
    // A name, never a path: "x.yaml" would be a file relative to the agent's working directory.
    if (r.policy.empty() || r.policy[0] == '.' || is_policy_path(r.policy))
        throw bad("policy must be the name of a policy in the agent's policy directory (no '/', no .yaml)", "policy");
    r.command = p.at("command").get<std::vector<std::string>>();
    if (r.command.empty() || r.command[0].empty()) throw bad("command must name a program", "command");
    for (const auto& arg : r.command)
        if (arg.find('\0') != std::string::npos) throw bad("command arguments may not contain NUL", "command");
    if (p.contains("env")) {
        for (const auto& e : p["env"]) {
            const auto& s = e.get_ref<const std::string&>();
            auto eq = s.find('=');
            if (eq == std::string::npos || !env_name_ok(std::string_view(s).substr(0, eq)) || s.find('\0') != std::string::npos)
                throw bad("env entries must be NAME=VALUE (the agent's own environment is not passed on): " + s.substr(0, 64), "env");
            r.env.push_back(s);
        }
    }
    if (p.contains("source_env")) {
        for (auto it = p["source_env"].begin(); it != p["source_env"].end(); ++it)
            r.source_env[it.key()] = it.value().get<std::string>();
    }
    if (p.contains("limits")) {
        std::string why;
        for (auto it = p["limits"].begin(); it != p["limits"].end(); ++it) {
            const std::string& k = it.key();
            const json& v = it.value();
            std::string text = v.is_string() ? v.get<std::string>() : v.is_number_unsigned() ? std::to_string(v.get<std::uint64_t>()) : "";
            if (k == "memory") {
                auto s = text.empty() ? std::nullopt : parse_size(text, &why);
                if (!s || *s == 0) throw bad("limits.memory must be a size, as \"256Mi\", or bytes", "limits.memory");
                r.limits.memory_bytes = *s;
            } else if (k == "pids") {
                // At most the kernel's PID_MAX_LIMIT: a larger pids.max could never be reached.
                if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > 4194304)
                    throw bad("limits.pids must be a whole number from 1 to 4194304", "limits.pids");
                r.limits.pids = v.get<std::uint64_t>();
            } else if (k == "cpu") {
                if (v.is_number() && !v.is_string()) text = v.dump();
                auto c = text.empty() ? std::nullopt : parse_cpu(text, &why);
                if (!c) throw bad("limits.cpu must be cores, as 0.5 or \"250m\"", "limits.cpu");
                r.limits.cpu_millicores = *c;
            } else if (k == "timeout") {
                auto d = v.is_string() ? parse_duration(text, &why) : std::nullopt;
                if (!d || d->count() <= 0) throw bad("limits.timeout must be a duration, as \"30s\"", "limits.timeout");
                r.limits.timeout = *d;
            } else {
                throw bad("unknown limit \"" + k + "\" (known: memory, pids, cpu, timeout)", "limits");
            }
        }
    }
    if (p.contains("stdio")) {
        const auto& s = p["stdio"].get_ref<const std::string&>();
        if (s == "pass") r.stdio = SandboxRequest::Stdio::pass;
        else if (s == "return") r.stdio = SandboxRequest::Stdio::returned;
        else if (s == "null") r.stdio = SandboxRequest::Stdio::null;
        else throw bad("stdio must be \"pass\" (the request carries fds 0, 1, 2), \"return\" (the agent sends them back) or \"null\"", "stdio");
    }
    if (p.contains("mcp")) r.mcp = p["mcp"].get<bool>();
    if (p.contains("keep")) r.keep = p["keep"].get<bool>();
    return r;
}

ApiCall call_request(const ApiRequest& request) {
    const json& p = request.params;
    ApiCall out;
    out.call.method = p.at("method").get<std::string>();
    if (out.call.method != "tools/call" && out.call.method != "tools/list" && out.call.method != "resources/read" &&
        out.call.method != "prompts/get")
        throw Error(ErrorKind::input_invalid, "method must be tools/call, tools/list, resources/read or prompts/get",
                    {{"field", "method"}});
    if (p.contains("params")) out.call.params = p["params"];
    if (p.contains("call_timeout")) {
        std::string why;
        auto d = parse_duration(p["call_timeout"].get<std::string>(), &why);
        if (!d || d->count() <= 0)
            throw Error(ErrorKind::input_invalid, "call_timeout must be a duration, as \"30s\"", {{"field", "call_timeout"}});
        out.call_timeout = *d;
    }
    return out;
}

int kill_signal(const ApiRequest& request) {
    auto it = request.params.find("signal");
    if (it == request.params.end()) return 15;
    // Compared as the 64-bit number it is: taken as an int, 4294967305 would be 9.
    if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > 64 ||
        (it->is_number_unsigned() && it->get<std::uint64_t>() > 64))
        throw Error(ErrorKind::input_invalid, "signal must be a number from 1 to 64", {{"field", "signal"}, {"observed", *it}});
    return static_cast<int>(it->get<std::int64_t>());
}

json api_result(const json& id, json result) {
    return {{"v", kApiVersion}, {"id", id}, {"ok", true}, {"result", std::move(result)}};
}

json api_error(const json& id, json error) {
    return {{"v", kApiVersion}, {"id", id}, {"ok", false}, {"error", std::move(error)}};
}

json api_error(const json& id, const Error& error) { return api_error(id, error.to_json()); }

json api_event(const json& id, const std::string& event, json fields) {
    json j = {{"v", kApiVersion}, {"id", id}, {"event", event}};
    for (auto it = fields.begin(); it != fields.end(); ++it) j[it.key()] = it.value();
    return j;
}

}  // namespace mcpwarden
