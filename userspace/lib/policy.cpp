// SPDX-License-Identifier: Apache-2.0
#include "policy.h"

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "env_refs.h"
#include "error.h"
#include "fs_rules.h"
#include "identity.h"
#include "units.h"
#include "yaml_doc.h"

namespace mcpwarden {

std::string SourceLocation::to_string() const {
    if (line == 0) return file;
    return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string EgressRule::describe() const {
    std::string out = cidr ? "cidr " + cidr->to_string() : "host " + host;
    if (!ports.empty()) {
        out += " ports ";
        for (size_t i = 0; i < ports.size(); ++i) {
            if (i) out += ",";
            out += std::to_string(ports[i].lo);
            if (ports[i].hi != ports[i].lo) out += "-" + std::to_string(ports[i].hi);
        }
    }
    if (protocol != Protocol::any) out += " " + std::string(mcpwarden::to_string(protocol));
    if (where.line) out += " (" + where.to_string() + ")";
    return out;
}

bool valid_policy_name(const std::string& name) {
    if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
    for (char c : name) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

namespace {

// Collects every problem of one file, each with its position.
class Checker {
public:
    explicit Checker(std::string file) : file_(std::move(file)) {}

    SourceLocation at(const YamlNode& node) const {
        return {file_, node.line(), node.column()};
    }
    void fail(const YamlNode& node, const std::string& message) { fail(at(node), message); }
    void fail(const SourceLocation& where, const std::string& message) {
        errors_.push_back({where, message});
    }

    bool is_map(const YamlNode& node, const std::string& what) {
        if (node.is_mapping()) return true;
        fail(node, what + " must be a mapping");
        return false;
    }
    bool is_seq(const YamlNode& node, const std::string& what) {
        if (node.is_sequence()) return true;
        fail(node, what + " must be a list");
        return false;
    }
    std::optional<std::string> scalar(const YamlNode& node, const std::string& what) {
        if (node.is_scalar()) return node.text();
        fail(node, what + " must be a single value");
        return std::nullopt;
    }

    // Calls fn(key, value) for each entry; unknown keys are errors naming the known ones.
    // The mapping must have been checked with is_map (or be one).
    template <typename Fn>
    void each_key(const YamlNode& map, const std::string& section,
                  std::initializer_list<const char*> known, Fn fn) {
        std::uint32_t seen = 0;  // bit i: known[i] was seen (a policy section has < 32 keys)
        for (const auto& [key, value] : map.entries()) {
            if (!key->is_scalar()) {
                fail(*key, "keys of " + section + " must be names");
                continue;
            }
            const std::string& k = key->text();
            int index = -1;
            for (int i = 0; const char* name : known) {
                if (index < 0 && k == name) index = i;
                ++i;
            }
            if (index < 0) {
                std::string list;
                for (const char* name : known) list += std::string(list.empty() ? "" : ", ") + name;
                fail(*key, "unknown key '" + k + "' in " + section + " (known: " + list + ")");
                continue;
            }
            if (seen & (1u << index)) {
                fail(*key, "duplicate key '" + k + "' in " + section);
                continue;
            }
            seen |= 1u << index;
            fn(k, *value);
        }
    }

    bool ok() const { return errors_.empty(); }
    [[noreturn]] void raise() const {
        nlohmann::json list = nlohmann::json::array();
        std::string message;
        for (const auto& [where, text] : errors_) {
            list.push_back({{"file", where.file},
                            {"line", where.line},
                            {"column", where.column},
                            {"message", text}});
            if (!message.empty()) message += "\n";
            message += where.to_string() + ": " + text;
        }
        throw Error(ErrorKind::policy_invalid, message, {{"errors", list}});
    }

private:
    std::string file_;
    std::vector<std::pair<SourceLocation, std::string>> errors_;
};

template <typename T>
std::optional<T> parse_with(Checker& c, const YamlNode& node, const std::string& what,
                            std::optional<T> (*fn)(std::string_view, std::string*)) {
    auto text = c.scalar(node, what);
    if (!text) return std::nullopt;
    std::string why;
    auto value = fn(*text, &why);
    if (!value) c.fail(node, what + ": " + why);
    return value;
}

std::optional<std::uint64_t> parse_count(Checker& c, const YamlNode& node,
                                         const std::string& what, std::uint64_t min,
                                         std::uint64_t max) {
    auto text = c.scalar(node, what);
    if (!text) return std::nullopt;
    std::uint64_t value = 0;
    size_t used = 0;
    try {
        if (!text->empty() && (*text)[0] != '-') value = std::stoull(*text, &used);
    } catch (...) {
        used = 0;
    }
    if (used == 0 || used != text->size()) {
        c.fail(node, what + " must be a whole number, not '" + *text + "'");
        return std::nullopt;
    }
    if (value < min || value > max) {
        c.fail(node, what + " must be between " + std::to_string(min) + " and " +
                         std::to_string(max) + ", not " + *text);
        return std::nullopt;
    }
    return value;
}

bool valid_host_pattern(const std::string& host, std::string* why) {
    std::string h = host;
    if (h.rfind("*.", 0) == 0) h = h.substr(2);
    if (h.empty() || h.size() > 253) {
        *why = "host name must have 1 to 253 characters";
        return false;
    }
    if (h.find('*') != std::string::npos) {
        *why = "a wildcard may only be the whole first label, as in *.example.com";
        return false;
    }
    std::stringstream ss(h);
    std::string label;
    int labels = 0;
    while (std::getline(ss, label, '.')) {
        ++labels;
        if (label.empty() || label.size() > 63) {
            *why = "every label of a host name must have 1 to 63 characters";
            return false;
        }
        for (char ch : label) {
            if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_')) {
                *why = std::string("character '") + ch + "' is not allowed in a host name";
                return false;
            }
        }
        if (label.front() == '-' || label.back() == '-') {
            *why = "a label may not start or end with '-'";
            return false;
        }
    }
    if (h.back() == '.') {
        *why = "write the host name without a trailing dot";
        return false;
    }
    if (host.rfind("*.", 0) == 0 && labels < 2) {
        *why = "a wildcard needs at least two labels after it (*.example.com), not a whole top-level domain";
        return false;
    }
    return true;
}

void parse_rule(Checker& c, const YamlNode& node, bool is_deny, std::vector<EgressRule>& out) {
    std::string what = std::string("egress.") + (is_deny ? "deny" : "allow") + " rule";
    if (!c.is_map(node, what)) return;
    EgressRule rule;
    rule.where = c.at(node);
    bool have_target = false;
    bool ok = true;
    c.each_key(node, what, {"cidr", "host", "ports", "port", "protocol", "comment"},
               [&](const std::string& key, const YamlNode& v) {
        if (key == "cidr") {
            auto text = c.scalar(v, "cidr");
            if (!text) { ok = false; return; }
            std::string why;
            rule.cidr = parse_cidr(*text, &why);
            if (!rule.cidr) { c.fail(v, "cidr: " + why); ok = false; }
            if (have_target) { c.fail(v, "a rule has either cidr or host, not both"); ok = false; }
            have_target = true;
        } else if (key == "host") {
            auto text = c.scalar(v, "host");
            if (!text) { ok = false; return; }
            std::string host;
            for (char ch : *text) host += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            std::string why;
            if (is_deny) {
                c.fail(v, "host names can only be allowed: a deny by name cannot be enforced, "
                          "because the same address may serve many names; deny its cidr instead, "
                          "or leave the name out of the allow list (default deny)");
                ok = false;
            } else if (parse_address(host)) {
                c.fail(v, "'" + host + "' is an address; write it as cidr: " + host);
                ok = false;
            } else if (!valid_host_pattern(host, &why)) {
                c.fail(v, "host: " + why);
                ok = false;
            }
            rule.host = host;
            if (have_target) { c.fail(v, "a rule has either cidr or host, not both"); ok = false; }
            have_target = true;
        } else if (key == "ports" || key == "port") {
            std::span<const YamlNode* const> items;
            const YamlNode* single = &v;
            if (v.is_sequence()) {
                items = v.items();
                if (items.empty()) { c.fail(v, "ports: an empty list allows nothing; leave ports out for every port"); ok = false; }
            } else {
                items = {&single, 1};
            }
            for (const YamlNode* item : items) {
                auto text = c.scalar(*item, "port");
                if (!text) { ok = false; continue; }
                std::string why;
                auto range = parse_port_range(*text, &why);
                if (!range) { c.fail(*item, "ports: " + why); ok = false; continue; }
                rule.ports.push_back(*range);
            }
            rule.ports = normalise_ports(rule.ports);
        } else if (key == "protocol") {
            auto text = c.scalar(v, "protocol");
            if (!text) { ok = false; return; }
            auto p = parse_protocol(*text);
            if (!p) { c.fail(v, "protocol must be tcp, udp or any, not '" + *text + "'"); ok = false; }
            else rule.protocol = *p;
        }
    });
    if (!have_target) {
        c.fail(node, what + " needs a cidr or a host");
        ok = false;
    }
    if (ok) out.push_back(std::move(rule));
}

void parse_rules(Checker& c, const YamlNode& node, bool is_deny, std::vector<EgressRule>& out) {
    if (node.is_null()) return;
    if (!c.is_seq(node, std::string("egress.") + (is_deny ? "deny" : "allow"))) return;
    out.reserve(out.size() + node.size());
    for (const YamlNode* item : node.items()) parse_rule(c, *item, is_deny, out);
}

std::vector<std::string> parse_string_list(Checker& c, const YamlNode& node,
                                           const std::string& what) {
    std::vector<std::string> out;
    if (node.is_null()) return out;
    if (!c.is_seq(node, what)) return out;
    for (const YamlNode* item : node.items()) {
        if (auto s = c.scalar(*item, what + " entry")) out.push_back(*s);
    }
    return out;
}

bool valid_env_name(const std::string& name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
    for (char ch : name) {
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_')) return false;
    }
    return true;
}

// `user:` names a fixed account instead of the pair's own uid (identity.h): the accounts that
// would give the server root or a person's rights are refused here already.
void parse_user(Checker& c, const YamlNode& v, Policy& p) {
    auto s = c.scalar(v, "user");
    if (!s) return;
    std::string why;
    if (!check_fixed_account(*s, &why) && !why.empty()) {
        c.fail(v, why);
        return;
    }
    p.user = *s;
}

// `filesystem:` read_only, read_write, hide: absolute normalised paths, each in one list once.
void parse_filesystem(Checker& c, const YamlNode& v, Policy& p) {
    if (v.is_null()) return;
    if (!c.is_map(v, "filesystem")) return;
    std::map<std::string, std::string> seen;  // path -> the list it is in
    c.each_key(v, "filesystem", {"read_only", "read_write", "hide"},
               [&](const std::string& list, const YamlNode& n) {
        if (n.is_null()) return;
        if (!c.is_seq(n, "filesystem." + list)) return;
        auto& out = list == "read_only" ? p.filesystem.read_only
                    : list == "read_write" ? p.filesystem.read_write : p.filesystem.hide;
        for (const YamlNode* item : n.items()) {
            auto text = c.scalar(*item, "filesystem." + list + " entry");
            if (!text) continue;
            std::string why;
            auto path = fsrules::normalise_path(*text, &why);
            if (path) why = fsrules::refused_policy_path(*path, list);
            if (!why.empty()) {
                c.fail(*item, "filesystem." + list + ": " + why);
                continue;
            }
            if (auto [it, fresh] = seen.emplace(*path, list); !fresh) {
                c.fail(*item, "filesystem." + list + ": " + *path +
                                  (it->second == list ? " is listed twice"
                                                      : " is already in filesystem." + it->second +
                                                            "; a path has one access"));
                continue;
            }
            out.push_back(*path);
        }
    });
}

void parse_bool(Checker& c, const YamlNode& node, const std::string& what, bool& out) {
    auto s = c.scalar(node, what);
    if (!s) return;
    if (*s == "true" || *s == "false") out = *s == "true";
    else c.fail(node, what + " must be true or false");
}

// command: [argv...] or {prefix: [argv...], args: [globs...]}
void parse_command(Checker& c, const YamlNode& node, CommandPin& pin) {
    pin.where = c.at(node);
    auto words = [&](const YamlNode& n, const std::string& what) {
        std::vector<std::string> out;
        if (!n.is_sequence()) {
            c.fail(n, what + " must be a list of words, as [npx, -y, \"@modelcontextprotocol/server-github\"]");
            return out;
        }
        out = parse_string_list(c, n, what);
        if (out.empty()) c.fail(n, what + " must not be empty");
        return out;
    };
    if (!node.is_mapping()) {
        pin.argv = words(node, "command");
        return;
    }
    bool has_args = false;
    c.each_key(node, "command", {"prefix", "args"}, [&](const std::string& k, const YamlNode& n) {
        if (k == "prefix") {
            pin.argv = words(n, "command.prefix");
            pin.prefix = true;
        } else {
            has_args = true;
            pin.args = parse_string_list(c, n, "command.args");
        }
    });
    if (!pin.prefix) c.fail(node, "command needs prefix: [words...] (or write the whole command as a list)");
    else if (!has_args)
        c.fail(node, "command.args must say which further arguments are allowed (globs; [\"*\"] for any)");
}

// cache: {max_size: 2G, on_full: trim|refuse}
void parse_cache(Checker& c, const YamlNode& node, CachePolicy& cache) {
    if (!c.is_map(node, "cache")) return;
    c.each_key(node, "cache", {"max_size", "on_full"}, [&](const std::string& k, const YamlNode& n) {
        if (k == "max_size") {
            cache.max_size = parse_with<std::uint64_t>(c, n, "cache.max_size", parse_size);
        } else if (auto s = c.scalar(n, "cache.on_full")) {
            if (*s == "trim") cache.on_full = CachePolicy::OnFull::trim;
            else if (*s == "refuse") cache.on_full = CachePolicy::OnFull::refuse;
            else c.fail(n, "cache.on_full must be trim or refuse, not '" + *s + "'");
        }
    });
}

Policy parse_document(Checker& c, const YamlNode& root, const std::string& file) {
    Policy p;
    p.source = file;
    if (root.is_null()) {
        c.fail(SourceLocation{file, 1, 1}, "the policy is empty; it needs at least a name");
        return p;
    }
    if (!c.is_map(root, "a policy")) return p;
    bool named = false;
    c.each_key(root, "the policy",
               {"name", "description", "limits", "egress", "dns", "env", "mcp", "user", "filesystem",
                "allow_user_namespaces", "command", "cache"},
               [&](const std::string& key, const YamlNode& v) {
        if (key == "name") {
            auto s = c.scalar(v, "name");
            if (!s) return;
            if (!valid_policy_name(*s)) {
                c.fail(v, "name '" + *s + "' must be 1-64 letters, digits, '-', '_' or '.'");
                return;
            }
            p.name = *s;
            named = true;
        } else if (key == "description") {
            if (auto s = c.scalar(v, "description")) p.description = *s;
        } else if (key == "user") {
            parse_user(c, v, p);
        } else if (key == "filesystem") {
            parse_filesystem(c, v, p);
        } else if (key == "allow_user_namespaces") {
            parse_bool(c, v, "allow_user_namespaces", p.allow_user_namespaces);
        } else if (key == "command") {
            parse_command(c, v, p.command);
        } else if (key == "cache") {
            parse_cache(c, v, p.cache);
        } else if (key == "limits") {
            if (!c.is_map(v, "limits")) return;
            c.each_key(v, "limits", {"memory", "pids", "cpu", "timeout", "open_files"},
                       [&](const std::string& k, const YamlNode& n) {
                if (k == "memory") {
                    p.limits.memory_bytes = parse_with<std::uint64_t>(c, n, "limits.memory", parse_size);
                    if (p.limits.memory_bytes && *p.limits.memory_bytes < (1u << 20)) {
                        c.fail(n, "limits.memory must be at least 1MiB");
                        p.limits.memory_bytes.reset();
                    }
                } else if (k == "pids") {
                    p.limits.pids = parse_count(c, n, "limits.pids", 1, 4194304);
                } else if (k == "open_files") {
                    // Below 16 not even a runtime starts; above the kernel's nr_open setrlimit fails.
                    p.limits.open_files = parse_count(c, n, "limits.open_files", 16, 1u << 20);
                } else if (k == "cpu") {
                    p.limits.cpu_millicores = parse_with<std::uint32_t>(c, n, "limits.cpu", parse_cpu);
                } else if (k == "timeout") {
                    p.limits.timeout = parse_with<std::chrono::milliseconds>(c, n, "limits.timeout", parse_duration);
                    if (p.limits.timeout && p.limits.timeout->count() <= 0) {
                        c.fail(n, "limits.timeout must be longer than 0");
                        p.limits.timeout.reset();
                    }
                }
            });
        } else if (key == "egress") {
            p.has_egress = true;
            if (v.is_null()) return;
            if (!c.is_map(v, "egress")) return;
            c.each_key(v, "egress", {"allow", "deny", "audit_only"},
                       [&](const std::string& k, const YamlNode& n) {
                if (k == "allow") parse_rules(c, n, false, p.egress.allow);
                else if (k == "deny") parse_rules(c, n, true, p.egress.deny);
                else if (k == "audit_only") {
                    auto s = c.scalar(n, "egress.audit_only");
                    if (!s) return;
                    if (*s == "true") p.egress.audit_only = true;
                    else if (*s == "false") p.egress.audit_only = false;
                    else c.fail(n, "egress.audit_only must be true or false");
                }
            });
        } else if (key == "dns") {
            if (!c.is_map(v, "dns")) return;
            c.each_key(v, "dns", {"upstream", "min_ttl", "max_learned", "allow_reserved_answers"},
                       [&](const std::string& k, const YamlNode& n) {
                if (k == "upstream") {
                    p.dns.upstream = parse_string_list(c, n, "dns.upstream");
                } else if (k == "min_ttl") {
                    p.dns.min_ttl = parse_with<std::chrono::milliseconds>(c, n, "dns.min_ttl", parse_duration);
                } else if (k == "max_learned") {
                    p.dns.max_learned = parse_count(c, n, "dns.max_learned", 1, 1u << 20);
                } else if (k == "allow_reserved_answers") {
                    auto s = c.scalar(n, "dns.allow_reserved_answers");
                    if (s && (*s == "true" || *s == "false")) p.dns.allow_reserved_answers = *s == "true";
                    else if (s) c.fail(n, "dns.allow_reserved_answers must be true or false");
                }
            });
        } else if (key == "env") {
            if (!c.is_map(v, "env")) return;
            c.each_key(v, "env", {"pass", "set"}, [&](const std::string& k, const YamlNode& n) {
                if (k == "pass") {
                    if (!n.is_sequence()) { c.fail(n, "env.pass must be a list of names"); return; }
                    for (const YamlNode* item : n.items()) {
                        auto s = c.scalar(*item, "env.pass entry");
                        if (!s) continue;
                        if (!valid_env_name(*s)) c.fail(*item, "'" + *s + "' is not a variable name");
                        else p.env.pass.push_back(*s);
                    }
                } else if (k == "set") {
                    if (!c.is_map(n, "env.set")) return;
                    for (const auto& [key, val] : n.entries()) {
                        std::string name = key->is_scalar() ? key->text() : "";
                        if (!valid_env_name(name)) {
                            c.fail(*key, "'" + name + "' is not a variable name");
                            continue;
                        }
                        EnvValue value;
                        const YamlNode* where = val;  // the value's own scalar, for messages
                        if (val->is_mapping()) {
                            c.each_key(*val, "env.set." + name, {"file", "value"},
                                       [&](const std::string& kk, const YamlNode& nn) {
                                auto s = c.scalar(nn, "env.set." + name + "." + kk);
                                if (!s) return;
                                if (kk == "file") {
                                    value.file = *s;
                                } else {
                                    value.value = *s;
                                    where = &nn;
                                }
                            });
                        } else if (auto s = c.scalar(*val, "env.set." + name)) {
                            value.value = *s;
                        }
                        if (!value.file) {
                            // Checked here, with every name present, so that a bad reference
                            // is an error of the file rather than of a run.
                            std::map<std::string, std::string> names;
                            for (const auto& k : sandbox_variables()) names[k];
                            try {
                                expand_sandbox_references(value.value, names);
                            } catch (const std::invalid_argument& e) {
                                c.fail(*where, "env.set." + name + ": " + e.what());
                            }
                        }
                        p.env.set[name] = value;
                    }
                }
            });
        } else if (key == "mcp") {
            p.mcp.enabled = true;
            if (v.is_null()) return;
            if (!c.is_map(v, "mcp")) return;
            auto& m = p.mcp;
            c.each_key(v, "mcp",
                       {"call_timeout", "tool_timeouts", "max_message_bytes", "max_depth",
                        "max_string_bytes", "max_array_length", "max_content_chars",
                        "max_result_bytes", "tools"},
                       [&](const std::string& k, const YamlNode& n) {
                if (k == "call_timeout") {
                    m.call_timeout = parse_with<std::chrono::milliseconds>(c, n, "mcp.call_timeout", parse_duration);
                } else if (k == "tool_timeouts") {
                    if (!c.is_map(n, "mcp.tool_timeouts")) return;
                    for (const auto& [key, val] : n.entries()) {
                        auto name = c.scalar(*key, "tool name");
                        auto d = parse_with<std::chrono::milliseconds>(c, *val, "mcp.tool_timeouts", parse_duration);
                        if (name && d) m.tool_timeouts[*name] = *d;
                    }
                } else if (k == "max_message_bytes") {
                    m.max_message_bytes = parse_with<std::uint64_t>(c, n, "mcp.max_message_bytes", parse_size);
                } else if (k == "max_depth") {
                    if (auto d = parse_count(c, n, "mcp.max_depth", 1, 10000)) m.max_depth = static_cast<std::uint32_t>(*d);
                } else if (k == "max_string_bytes") {
                    m.max_string_bytes = parse_with<std::uint64_t>(c, n, "mcp.max_string_bytes", parse_size);
                } else if (k == "max_array_length") {
                    m.max_array_length = parse_count(c, n, "mcp.max_array_length", 1, 1ull << 40);
                } else if (k == "max_content_chars") {
                    m.max_content_chars = parse_count(c, n, "mcp.max_content_chars", 1, 1ull << 40);
                } else if (k == "max_result_bytes") {
                    m.max_result_bytes = parse_with<std::uint64_t>(c, n, "mcp.max_result_bytes", parse_size);
                } else if (k == "tools") {
                    if (!c.is_map(n, "mcp.tools")) return;
                    c.each_key(n, "mcp.tools", {"allow", "deny"}, [&](const std::string& kk, const YamlNode& nn) {
                        auto list = parse_string_list(c, nn, "mcp.tools." + kk);
                        (kk == "allow" ? m.tools_allow : m.tools_deny) = list;
                    });
                }
            });
        }
    });
    if (!named && root.is_mapping()) c.fail(c.at(root), "the policy needs a name (name: my-integration)");
    return p;
}

}  // namespace

Policy parse_policy(const std::string& text, const std::string& file_name) {
    Checker c(file_name);
    YamlProblem problem;
    auto doc = read_yaml(text, &problem);
    if (!doc) {
        c.fail(SourceLocation{file_name, problem.line, problem.column},
               "YAML syntax: " + problem.message);
        c.raise();
    }
    Policy p = parse_document(c, doc->root(), file_name);
    if (!c.ok()) c.raise();
    return p;
}

Policy load_policy_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error(ErrorKind::policy_invalid, errno_text("cannot read policy " + path, errno),
                    {{"file", path}});
    }
    std::string text;
    in.seekg(0, std::ios::end);
    auto size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (size > 0) {
        // One read of the whole file (a stringstream copies it twice).
        text.resize(static_cast<std::size_t>(size));
        in.read(text.data(), size);
        text.resize(static_cast<std::size_t>(in.gcount()));
    } else {
        // Not seekable (a pipe, /dev/stdin) or empty: read to the end.
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    return parse_policy(text, path);
}

}  // namespace mcpwarden
