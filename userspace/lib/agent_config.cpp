// SPDX-License-Identifier: Apache-2.0
#include "agent_config.h"

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "error.h"
#include "units.h"
#include "yaml_doc.h"

namespace mcpwarden {
namespace {

class ConfigReader {
public:
    explicit ConfigReader(std::string file) : file_(std::move(file)) {}

    void problem(const YamlNode& at, const std::string& message) { problem(at.line(), at.column(), message); }
    void problem(int line, int column, const std::string& message) {
        errors_.push_back({line, column, message});
    }
    bool failed() const { return !errors_.empty(); }

    [[noreturn]] void raise() const {
        std::string text;
        nlohmann::json list = nlohmann::json::array();
        for (const auto& e : errors_) {
            if (!text.empty()) text += "\n";
            text += file_ + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message;
            list.push_back({{"file", file_}, {"line", e.line}, {"column", e.column}, {"message", e.message}});
        }
        throw Error(ErrorKind::usage, text, {{"errors", list}});
    }

    // Walks a mapping: each key must be one of `fields` and appear once.
    void mapping(const YamlNode& node, const std::string& what,
                 const std::map<std::string, std::function<void(const YamlNode&)>>& fields) {
        if (!node.is_mapping()) {
            problem(node, what + " must be a mapping");
            return;
        }
        std::map<std::string, bool> seen;
        for (const auto& entry : node.entries()) {
            const std::string& key = entry.key->text();
            auto it = entry.key->is_scalar() ? fields.find(key) : fields.end();
            if (it == fields.end()) {
                std::string known;
                for (const auto& [k, _] : fields) known += (known.empty() ? "" : ", ") + k;
                problem(*entry.key, "unknown key '" + key + "' in " + what + " (known: " + known + ")");
                continue;
            }
            if (seen[key]) {
                problem(*entry.key, "duplicate key '" + key + "' in " + what);
                continue;
            }
            seen[key] = true;
            it->second(*entry.value);
        }
    }

    std::optional<std::string> string(const YamlNode& node, const std::string& what) {
        if (!node.is_scalar()) {
            problem(node, what + " must be a string");
            return std::nullopt;
        }
        return node.text();
    }

    std::optional<std::uint64_t> count(const YamlNode& node, const std::string& what, std::uint64_t min) {
        const std::string& t = node.text();
        if (!node.is_scalar() || t.empty() || t.size() > 18 || t.find_first_not_of("0123456789") != std::string::npos) {
            problem(node, what + " must be a whole number");
            return std::nullopt;
        }
        std::uint64_t v = std::stoull(t);
        if (v < min) {
            problem(node, what + " must be at least " + std::to_string(min));
            return std::nullopt;
        }
        return v;
    }

    std::optional<bool> boolean(const YamlNode& node, const std::string& what) {
        if (node.is_scalar() && (node.text() == "true" || node.text() == "false")) return node.text() == "true";
        problem(node, what + " must be true or false");
        return std::nullopt;
    }

    std::optional<std::chrono::milliseconds> duration(const YamlNode& node, const std::string& what) {
        std::string why;
        auto v = node.is_scalar() ? parse_duration(node.text(), &why) : std::nullopt;
        if (!v || v->count() <= 0) {
            problem(node, what + " must be a duration above 0, as 30s or 2m" + (why.empty() ? "" : " (" + why + ")"));
            return std::nullopt;
        }
        return v;
    }

    void limits(const YamlNode& node, Limits& out) {
        mapping(node, "defaults.limits", {
            {"memory", [&](const YamlNode& v) {
                 std::string why;
                 auto s = v.is_scalar() ? parse_size(v.text(), &why) : std::nullopt;
                 if (!s || *s == 0) problem(v, "memory must be a size, as 256Mi" + (why.empty() ? "" : " (" + why + ")"));
                 else out.memory_bytes = *s;
             }},
            {"pids", [&](const YamlNode& v) { if (auto n = count(v, "pids", 1)) out.pids = *n; }},
            {"cpu", [&](const YamlNode& v) {
                 std::string why;
                 auto c = v.is_scalar() ? parse_cpu(v.text(), &why) : std::nullopt;
                 if (!c) problem(v, "cpu must be cores, as 1, 0.5 or 250m" + (why.empty() ? "" : " (" + why + ")"));
                 else out.cpu_millicores = *c;
             }},
            {"timeout", [&](const YamlNode& v) { if (auto d = duration(v, "timeout")) out.timeout = *d; }},
        });
    }

    void client(const YamlNode& node, AgentConfig& config) {
        AgentClientRule rule;
        rule.line = node.line();
        rule.column = node.column();
        int whos = 0;
        bool has_policies = false;
        auto who = [&](AgentClientRule::Who w, bool numeric) {
            return [&, w, numeric](const YamlNode& v) {
                ++whos;
                rule.who = w;
                if (numeric) {
                    if (auto n = count(v, "a uid or gid", 0); n && *n <= 0xFFFFFFFEu) rule.id = static_cast<std::uint32_t>(*n);
                    else if (n) problem(v, "a uid or gid must be below 4294967295");
                } else if (auto s = string(v, "a user or group name")) {
                    if (s->empty()) problem(v, "a user or group name may not be empty");
                    rule.name = *s;
                }
            };
        };
        mapping(node, "a clients entry", {
            {"uid", who(AgentClientRule::Who::uid, true)},
            {"gid", who(AgentClientRule::Who::gid, true)},
            {"user", who(AgentClientRule::Who::user, false)},
            {"group", who(AgentClientRule::Who::group, false)},
            {"policies", [&](const YamlNode& v) {
                 has_policies = true;
                 if (v.is_scalar() && v.text() == "*") {
                     rule.all_policies = true;
                     return;
                 }
                 if (!v.is_sequence()) {
                     problem(v, "policies must be a list of policy names, or \"*\" for every policy");
                     return;
                 }
                 for (const YamlNode* p : v.items()) {
                     if (!p->is_scalar() || p->text().empty() || p->text().find('/') != std::string::npos) {
                         problem(*p, "a policy name must be a non-empty name without '/'");
                     } else if (p->text() == "*") {
                         rule.all_policies = true;
                     } else {
                         rule.policies.push_back(p->text());
                     }
                 }
             }},
        });
        if (!node.is_mapping()) return;
        if (whos != 1) problem(node, "a clients entry names exactly one of uid, gid, user and group");
        if (!has_policies) problem(node, "a clients entry needs policies: [NAME, ...] (or \"*\")");
        config.clients.push_back(std::move(rule));
    }

    void top(const YamlNode& root, AgentConfig& config) {
        if (root.is_null()) return;  // an empty file: every default
        mapping(root, "the agent configuration", {
            {"socket", [&](const YamlNode& v) {
                 if (auto s = string(v, "socket")) {
                     if (s->empty() || (*s)[0] != '/') problem(v, "socket must be an absolute path");
                     else if (s->size() >= 108) problem(v, "socket path is too long (a Unix socket path has at most 107 bytes)");
                     else config.socket = *s;
                 }
             }},
            {"socket_mode", [&](const YamlNode& v) {
                 const std::string& t = v.text();
                 if (!v.is_scalar() || t.empty() || t.size() > 4 || t.find_first_not_of("01234567") != std::string::npos)
                     problem(v, "socket_mode must be octal, as \"0660\"");
                 else config.socket_mode = static_cast<std::uint32_t>(std::stoul(t, nullptr, 8));
             }},
            {"policy_dir", [&](const YamlNode& v) { if (auto s = string(v, "policy_dir")) config.policy_dir = *s; }},
            {"state_dir", [&](const YamlNode& v) {
                 if (auto s = string(v, "state_dir")) {
                     if (s->empty() || (*s)[0] != '/') problem(v, "state_dir must be an absolute path");
                     else config.state_dir = *s;
                 }
             }},
            {"uid_range", [&](const YamlNode& v) {
                 auto s = string(v, "uid_range");
                 if (!s) return;
                 std::string why;
                 auto r = parse_uid_range(*s, &why);
                 if (r) why = identity_range_problem(*r, read_subid_ranges());
                 if (!why.empty()) problem(v, "uid_range: " + why);
                 else config.uid_range = r;
             }},
            {"cgroup_root", [&](const YamlNode& v) { if (auto s = string(v, "cgroup_root")) config.cgroup_root = *s; }},
            {"audit", [&](const YamlNode& v) { if (auto s = string(v, "audit")) config.audit = *s; }},
            {"metrics", [&](const YamlNode& v) {
                 auto s = string(v, "metrics");
                 if (!s) return;
                 auto colon = s->rfind(':');
                 bool path = !s->empty() && (*s)[0] == '/';
                 bool hostport = !path && colon != std::string::npos && colon > 0 && colon + 1 < s->size() &&
                                 s->find_first_not_of("0123456789", colon + 1) == std::string::npos &&
                                 s->size() - colon - 1 <= 5 && std::stoul(s->substr(colon + 1)) <= 65535;
                 if (!path && !hostport) problem(v, "metrics must be a Unix socket path (/run/mcpwarden/metrics.sock) or HOST:PORT (127.0.0.1:9464)");
                 else config.metrics = *s;
             }},
            {"log_format", [&](const YamlNode& v) {
                 if (v.is_scalar() && (v.text() == "json" || v.text() == "text")) config.json_logs = v.text() == "json";
                 else problem(v, "log_format must be json or text");
             }},
            {"allow_unpinned_secrets", [&](const YamlNode& v) {
                 if (auto b = boolean(v, "allow_unpinned_secrets")) config.allow_unpinned_secrets = *b;
             }},
            {"on_restart", [&](const YamlNode& v) {
                 if (v.is_scalar() && (v.text() == "adopt" || v.text() == "kill"))
                     config.on_restart = v.text() == "kill" ? AgentConfig::OnRestart::kill : AgentConfig::OnRestart::adopt;
                 else problem(v, "on_restart must be adopt or kill");
             }},
            {"clients", [&](const YamlNode& v) {
                 if (!v.is_sequence()) {
                     problem(v, "clients must be a list of {uid|gid|user|group, policies} entries");
                     return;
                 }
                 for (const YamlNode* c : v.items()) client(*c, config);
             }},
            {"limits", [&](const YamlNode& v) {
                 auto& l = config.limits;
                 mapping(v, "limits", {
                     {"max_sandboxes", [&](const YamlNode& n) { if (auto c = count(n, "max_sandboxes", 1)) l.max_sandboxes = *c; }},
                     {"max_per_policy", [&](const YamlNode& n) { if (auto c = count(n, "max_per_policy", 1)) l.max_per_policy = *c; }},
                     {"queue_length", [&](const YamlNode& n) { if (auto c = count(n, "queue_length", 0)) l.queue_length = *c; }},
                     {"queue_timeout", [&](const YamlNode& n) { if (auto d = duration(n, "queue_timeout")) l.queue_timeout = *d; }},
                     {"max_request_bytes", [&](const YamlNode& n) {
                          std::string why;
                          auto s = n.is_scalar() ? parse_size(n.text(), &why) : std::nullopt;
                          if (!s || *s < 1024 || *s > (64u << 20)) problem(n, "max_request_bytes must be a size from 1Ki to 64Mi");
                          else l.max_request_bytes = *s;
                      }},
                     {"max_connections", [&](const YamlNode& n) { if (auto c = count(n, "max_connections", 1)) l.max_connections = *c; }},
                     {"max_connections_per_uid", [&](const YamlNode& n) {
                          if (auto c = count(n, "max_connections_per_uid", 1)) l.max_connections_per_uid = *c;
                      }},
                     {"idle_timeout", [&](const YamlNode& n) { if (auto d = duration(n, "idle_timeout")) l.idle_timeout = *d; }},
                     {"max_per_client", [&](const YamlNode& n) { if (auto c = count(n, "max_per_client", 0)) l.max_per_client = *c; }},
                 });
             }},
            {"defaults", [&](const YamlNode& v) {
                 mapping(v, "defaults", {
                     {"limits", [&](const YamlNode& n) { limits(n, config.default_limits); }},
                     {"allow_degraded", [&](const YamlNode& n) { if (auto b = boolean(n, "allow_degraded")) config.allow_degraded = *b; }},
                 });
             }},
        });
    }

private:
    struct Problem {
        int line, column;
        std::string message;
    };
    std::string file_;
    std::vector<Problem> errors_;
};

bool rule_matches(const AgentClientRule& rule, const PeerIdentity& peer) {
    switch (rule.who) {
        case AgentClientRule::Who::uid: return peer.uid == rule.id;
        case AgentClientRule::Who::user: return !peer.user.empty() && peer.user == rule.name;
        case AgentClientRule::Who::gid:
            if (peer.gid == rule.id) return true;
            for (const auto& [gid, _] : peer.groups)
                if (gid == rule.id) return true;
            return false;
        case AgentClientRule::Who::group:
            for (const auto& [_, name] : peer.groups)
                if (!name.empty() && name == rule.name) return true;
            return false;
    }
    return false;
}

}  // namespace

AgentConfig parse_agent_config(std::string_view text, const std::string& file_name) {
    ConfigReader reader(file_name);
    YamlProblem yp;
    auto doc = read_yaml(text, &yp);
    if (!doc) {
        reader.problem(yp.line, yp.column, yp.message);
        reader.raise();
    }
    AgentConfig config;
    config.source = file_name;
    reader.top(doc->root(), config);
    if (reader.failed()) reader.raise();
    return config;
}

AgentConfig load_agent_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::usage, errno_text("cannot read agent configuration " + path, errno), {{"file", path}});
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_agent_config(ss.str(), path);
}

bool peer_known(const AgentConfig& config, const PeerIdentity& peer) {
    if (peer.uid == 0) return true;
    for (const auto& rule : config.clients)
        if (rule_matches(rule, peer)) return true;
    return false;
}

bool peer_may_use(const AgentConfig& config, const PeerIdentity& peer, const std::string& policy) {
    if (peer.uid == 0) return true;
    for (const auto& rule : config.clients) {
        if (!rule_matches(rule, peer)) continue;
        if (rule.all_policies) return true;
        for (const auto& p : rule.policies)
            if (p == policy) return true;
    }
    return false;
}

Limits effective_limits(const Limits& policy, const Limits& asked, const Limits& defaults) {
    Limits out;
    auto pick = [](const char* name, const auto& pol, const auto& ask, const auto& def, auto& dst, auto figure) {
        if (ask && pol && *ask > *pol) {
            throw Error(ErrorKind::input_invalid,
                        std::string("the request asks ") + name + " " + figure(*ask) + ", above the policy's " +
                            figure(*pol) + "; a request may only lower a policy's limits",
                        {{"limit_name", name}, {"limit", figure(*pol)}, {"observed", figure(*ask)}});
        }
        dst = ask ? ask : pol ? pol : def;
    };
    auto num = [](auto v) { return std::to_string(v); };
    pick("memory", policy.memory_bytes, asked.memory_bytes, defaults.memory_bytes, out.memory_bytes, [](std::uint64_t v) { return format_size(v); });
    pick("pids", policy.pids, asked.pids, defaults.pids, out.pids, num);
    pick("cpu", policy.cpu_millicores, asked.cpu_millicores, defaults.cpu_millicores, out.cpu_millicores,
         [](std::uint32_t v) { return std::to_string(v) + "m"; });
    pick("timeout", policy.timeout, asked.timeout, defaults.timeout, out.timeout,
         [](std::chrono::milliseconds v) { return format_duration(v); });
    return out;
}

}  // namespace mcpwarden
