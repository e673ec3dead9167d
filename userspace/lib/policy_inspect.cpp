// SPDX-License-Identifier: Apache-2.0
#include "policy_inspect.h"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "command_pin.h"
#include "egress_compiler.h"
#include "error.h"
#include "fs_rules.h"
#include "host_match.h"
#include "mcp_session.h"
#include "units.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;

// Finds the position of a key path ("mcp", "tool_timeouts", "x") in the YAML text, so that
// warnings about values without a recorded position still point at the line.
using Locator = std::function<SourceLocation(const std::vector<std::string>& path)>;

// The position of a key path in block-style YAML, found by indentation: a warning about a value
// the parsed policy keeps no position for still points at its line. Stops at the deepest key it
// finds (flow style, "mcp: { ... }", is not looked into); nothing found = the file alone.
SourceLocation locate_key(std::string_view text, const std::string& file, const std::vector<std::string>& path) {
    SourceLocation where{file, 0, 0};
    size_t depth = 0;
    int parent_indent = -1;
    int child_indent = 0;  // the indentation of the keys searched for; -1 = the next line's
    int line_no = 0;
    size_t pos = 0;
    while (pos <= text.size() && depth < path.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        size_t indent = line.find_first_not_of(' ');
        if (indent == std::string_view::npos || line[indent] == '#') continue;
        if (static_cast<int>(indent) <= parent_indent) break;  // left the parent's block
        if (child_indent < 0) child_indent = static_cast<int>(indent);
        if (static_cast<int>(indent) != child_indent) continue;  // deeper: not a sibling key
        std::string_view rest = line.substr(indent);
        const std::string& key = path[depth];
        for (const std::string& form : {key, "\"" + key + "\"", "'" + key + "'"}) {
            if (rest.substr(0, form.size()) == form && rest.substr(form.size()).starts_with(":")) {
                where = {file, line_no, static_cast<int>(indent) + 1};
                parent_indent = static_cast<int>(indent);
                child_indent = -1;
                ++depth;
                break;
            }
        }
        if (end == text.size()) break;
    }
    return where;
}

// ---- ports and protocols ----------------------------------------------------------------

constexpr PortRange kEveryPort{1, 65535};

std::vector<PortRange> ports_of(const EgressRule& r) {
    if (r.ports.empty()) return {kEveryPort};
    return normalise_ports(r.ports);
}

std::vector<PortRange> intersect(const std::vector<PortRange>& a, const std::vector<PortRange>& b) {
    std::vector<PortRange> out;
    for (const auto& x : a) {
        for (const auto& y : b) {
            auto lo = std::max(x.lo, y.lo), hi = std::min(x.hi, y.hi);
            if (lo <= hi) out.push_back({lo, hi});
        }
    }
    return normalise_ports(out);
}

bool ports_within(const std::vector<PortRange>& inner, const std::vector<PortRange>& outer) {
    return intersect(inner, outer) == normalise_ports(inner);
}

std::string format_ports(const std::vector<PortRange>& ports) {
    if (ports.empty() || ports == std::vector<PortRange>{kEveryPort}) return "every port";
    std::string out;
    for (const auto& p : ports) {
        if (!out.empty()) out += ",";
        out += std::to_string(p.lo);
        if (p.hi != p.lo) out += "-" + std::to_string(p.hi);
    }
    return out;
}

json ports_json(const std::vector<PortRange>& ports) {
    json out = json::array();
    for (const auto& p : ports)
        out.push_back(p.lo == p.hi ? std::to_string(p.lo) : std::to_string(p.lo) + "-" + std::to_string(p.hi));
    return out;
}

bool protocols_overlap(Protocol a, Protocol b) {
    return a == Protocol::any || b == Protocol::any || a == b;
}

bool protocol_within(Protocol inner, Protocol outer) {
    return outer == Protocol::any || inner == outer;
}

Protocol common_protocol(Protocol a, Protocol b) { return a == Protocol::any ? b : a; }

std::string protocol_text(Protocol p) {
    return p == Protocol::any ? "tcp and udp" : std::string(to_string(p));
}

bool covers(const EgressRule& r, std::uint16_t port, Protocol protocol) {
    if (!protocol_within(protocol, r.protocol)) return false;
    for (const auto& p : ports_of(r)) {
        if (port >= p.lo && port <= p.hi) return true;
    }
    return false;
}

// ---- reserved ranges --------------------------------------------------------------------

struct ReservedRange {
    Cidr cidr;
    std::string what;  // "loopback"
};

// The reserved ranges exactly as the compiler hands them to the kernel: the entries of a
// policy without rules.
const std::vector<ReservedRange>& reserved_ranges() {
    static const std::vector<ReservedRange> ranges = [] {
        std::vector<ReservedRange> out;
        CompiledEgress c = compile_egress(Egress{}, 1);
        auto add = [&](int family, const mw_u8* addr, mw_u32 prefixlen) {
            Cidr net;
            net.family = family;
            std::memcpy(net.addr.data(), addr, family == AF_INET ? 4 : 16);
            net.prefix = static_cast<int>(prefixlen) - 64;
            std::string text = reserved_range_of(net).value_or("");
            auto open = text.find(" (");
            std::string what = open == std::string::npos ? "reserved" : text.substr(open + 2, text.size() - open - 3);
            out.push_back({net, what});
        };
        for (const auto& [k, v] : c.v4) add(AF_INET, k.addr, k.prefixlen);
        for (const auto& [k, v] : c.v6) add(AF_INET6, k.addr, k.prefixlen);
        return out;
    }();
    return ranges;
}

// A wider allow makes a narrower one redundant unless a reserved range lies between them (a
// reserved range drops the allows of wider networks).
bool reserved_between(const Cidr& outer, const Cidr& inner) {
    for (const auto& r : reserved_ranges()) {
        if (outer.contains(r.cidr) && r.cidr.prefix > outer.prefix && r.cidr.contains(inner)) return true;
    }
    return false;
}

// ---- lint -------------------------------------------------------------------------------

std::string target_of(const EgressRule& r) { return r.cidr ? "cidr " + r.cidr->to_string() : "host " + r.host; }

bool same_target(const EgressRule& a, const EgressRule& b) {
    if (a.cidr && b.cidr) return *a.cidr == *b.cidr;
    if (!a.cidr && !b.cidr) return a.host == b.host;
    return false;
}

void lint_list(const std::vector<EgressRule>& rules, const char* action, std::vector<Diagnostic>& out) {
    for (size_t j = 0; j < rules.size(); ++j) {
        const auto& b = rules[j];
        for (size_t i = 0; i < j; ++i) {
            const auto& a = rules[i];
            if (!same_target(a, b) || !protocols_overlap(a.protocol, b.protocol)) continue;
            auto common = intersect(ports_of(a), ports_of(b));
            if (common.empty()) continue;
            if (a.protocol == b.protocol && ports_of(a) == ports_of(b)) {
                out.push_back({b.where, std::string("duplicate ") + action + " rule: the rule at " +
                                            a.where.to_string() + " already " + action + "s " +
                                            target_of(b) + " on " + format_ports(common) + " " +
                                            protocol_text(b.protocol)});
            } else {
                out.push_back({b.where, std::string(action) + " rule overlaps the rule at " +
                                            a.where.to_string() + " (" + target_of(b) + ", " +
                                            format_ports(common) + " " +
                                            protocol_text(common_protocol(a.protocol, b.protocol)) +
                                            "); merge them into one rule"});
            }
            break;
        }
    }
}

void lint_redundant_allows(const std::vector<EgressRule>& allow, std::vector<Diagnostic>& out) {
    for (size_t j = 0; j < allow.size(); ++j) {
        const auto& inner = allow[j];
        for (size_t i = 0; i < allow.size(); ++i) {
            const auto& outer = allow[i];
            if (i == j || same_target(inner, outer)) continue;
            if (!protocol_within(inner.protocol, outer.protocol) || !ports_within(ports_of(inner), ports_of(outer)))
                continue;
            bool wider = false;
            if (inner.cidr && outer.cidr) {
                wider = outer.cidr->contains(*inner.cidr) && !reserved_between(*outer.cidr, *inner.cidr);
            } else if (!inner.cidr && !outer.cidr && inner.host.rfind("*.", 0) != 0) {
                wider = host_matches(outer.host, inner.host);
            }
            if (wider) {
                out.push_back({inner.where, "redundant allow rule: the rule at " + outer.where.to_string() +
                                                " (" + target_of(outer) + ") already allows " +
                                                target_of(inner) + " on these ports"});
                break;
            }
        }
    }
}

void lint_denied_allows(const Egress& e, std::vector<Diagnostic>& out) {
    for (const auto& a : e.allow) {
        if (!a.cidr) continue;
        for (const auto& d : e.deny) {
            if (!d.cidr || !d.cidr->contains(*a.cidr) || !protocols_overlap(a.protocol, d.protocol)) continue;
            auto common = intersect(ports_of(a), ports_of(d));
            if (common.empty()) continue;
            if (protocol_within(a.protocol, d.protocol) && ports_within(ports_of(a), ports_of(d))) {
                out.push_back({a.where, "allow rule has no effect: the deny rule at " + d.where.to_string() +
                                            " (" + target_of(d) + ") covers everything it allows, "
                                            "and deny wins over allow"});
            } else {
                out.push_back({a.where, "part of this allow rule has no effect: " + format_ports(common) + " " +
                                            protocol_text(common_protocol(a.protocol, d.protocol)) +
                                            " is denied by the rule at " + d.where.to_string() + " (" +
                                            target_of(d) + "), and deny wins over allow"});
            }
            break;
        }
    }
}

void lint_broad_allows(const std::vector<EgressRule>& allow, std::vector<Diagnostic>& out) {
    static const Cidr metadata4 = *parse_address("169.254.169.254");
    static const Cidr metadata6 = *parse_address("fd00:ec2::254");
    for (const auto& r : allow) {
        if (!r.cidr) continue;
        if (r.cidr->prefix == 0) {
            out.push_back({r.where, std::string("allow rule opens every public IPv") +
                                        (r.cidr->family == AF_INET ? "4" : "6") +
                                        " address (reserved ranges stay denied); prefer host rules "
                                        "or the service's published networks"});
        }
        // Only a rule inside the link-local / unique-local range reaches the metadata address.
        if ((r.cidr->contains(metadata4) && r.cidr->prefix >= 16) ||
            (r.cidr->contains(metadata6) && r.cidr->prefix >= 7)) {
            out.push_back({r.where, "allow rule opens the cloud metadata service (" +
                                        (r.cidr->family == AF_INET ? metadata4 : metadata6).to_string() +
                                        "): instance credentials become reachable from the sandbox"});
        }
    }
}

bool path_inside_state_dir_note(const std::string& path, const std::string& state_dir) {
    return fsrules::path_within(path, state_dir);
}

// A path the default view (or a rule of the policy above it) already gives the same access
// does nothing; one missing on this host makes the run refuse.
void lint_filesystem(const FilesystemPolicy& f, const Locator& at, std::vector<Diagnostic>& out) {
    auto check = [&](const std::vector<std::string>& paths, const char* list) {
        for (std::size_t i = 0; i < paths.size(); ++i) {
            FilesystemPolicy without = f;
            auto& l = std::string_view(list) == "read_only" ? without.read_only
                      : std::string_view(list) == "read_write" ? without.read_write : without.hide;
            l.erase(l.begin() + static_cast<long>(i));
            auto mine = fsrules::decide(paths[i], f, {});
            auto before = fsrules::decide(paths[i], without, {});
            if (mine.access == before.access) {
                out.push_back({at({"filesystem", list}),
                               "filesystem." + std::string(list) + ": " + paths[i] + " is " +
                                   fsrules::to_string(before.access) + " without this entry (" + before.rule.describe() +
                                   "): it changes nothing"});
            }
            struct stat st {};
            if (std::string_view(list) != "hide" && ::stat(paths[i].c_str(), &st) != 0) {
                out.push_back({at({"filesystem", list}),
                               "filesystem." + std::string(list) + ": " + paths[i] +
                                   " does not exist on this host: `mcpwarden run` with this policy refuses to start"});
            }
        }
    };
    check(f.read_only, "read_only");
    check(f.read_write, "read_write");
    check(f.hide, "hide");
}

std::vector<Diagnostic> lint(const Policy& p, const Locator& at) {
    std::vector<Diagnostic> out;
    lint_list(p.egress.allow, "allow", out);
    lint_list(p.egress.deny, "deny", out);
    lint_redundant_allows(p.egress.allow, out);
    lint_denied_allows(p.egress, out);
    lint_broad_allows(p.egress.allow, out);
    if (!p.user.empty() && ::getpwnam(p.user.c_str()) == nullptr) {
        out.push_back({at({"user"}), "user '" + p.user + "' does not exist on this host: `mcpwarden run` "
                                     "with this policy refuses to start unless --user names another"});
    }
    lint_filesystem(p.filesystem, at, out);
    if (p.mcp.enabled) {
        auto config = McpConfig::from_policy(p.mcp);
        for (const auto& [tool, _] : p.mcp.tool_timeouts) {
            if (auto why = config.tool_refusal(tool)) {
                out.push_back({at({"mcp", "tool_timeouts", tool}),
                               "mcp.tool_timeouts names '" + tool + "', which the tool filters refuse (" +
                                   *why + "): the timeout never applies"});
            }
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
    });
    return out;
}

// ---- formatting -------------------------------------------------------------------------

// The largest unit that divides the duration exactly: 10m, 90s, 1500ms.
std::string canonical_duration(std::chrono::milliseconds d) {
    auto ms = d.count();
    if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
    if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

std::string canonical_cpu(std::uint32_t millicores) {
    char buf[64];
    if (millicores % 1000 == 0) {
        std::snprintf(buf, sizeof buf, "%u core%s", millicores / 1000, millicores == 1000 ? "" : "s");
    } else {
        std::snprintf(buf, sizeof buf, "%.3g cores", millicores / 1000.0);
    }
    return std::string(buf) + " (" + std::to_string(millicores) + "m)";
}

std::string plural(std::size_t n, const std::string& word) {
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

// Rules with the same action, target and protocol, merged.
struct MergedRule {
    std::string action;  // "allow" or "deny"
    std::optional<Cidr> cidr;
    std::string host;
    Protocol protocol = Protocol::any;
    std::vector<PortRange> ports;
    std::vector<std::string> sources;
};

std::vector<MergedRule> merge_rules(const std::vector<EgressRule>& rules, const std::string& action) {
    std::vector<MergedRule> out;
    for (const auto& r : rules) {
        auto it = std::find_if(out.begin(), out.end(), [&](const MergedRule& m) {
            bool target = (m.cidr && r.cidr) ? *m.cidr == *r.cidr : (!m.cidr && !r.cidr && m.host == r.host);
            return target && m.protocol == r.protocol;
        });
        if (it == out.end()) {
            out.push_back({action, r.cidr, r.host, r.protocol, {}, {}});
            it = out.end() - 1;
        }
        auto ports = ports_of(r);
        it->ports.insert(it->ports.end(), ports.begin(), ports.end());
        it->ports = normalise_ports(it->ports);
        it->sources.push_back(r.where.to_string());
    }
    return out;
}

std::string merged_text(const MergedRule& m) {
    std::string out = m.cidr ? "cidr " + m.cidr->to_string() : "host " + m.host;
    out += m.ports == std::vector<PortRange>{kEveryPort} ? " every port" : " ports " + format_ports(m.ports);
    out += " " + (m.protocol == Protocol::any ? std::string("tcp+udp") : std::string(to_string(m.protocol)));
    return out;
}

json merged_json(const MergedRule& m) {
    json j = {{"action", m.action}};
    if (m.cidr) j["cidr"] = m.cidr->to_string() + (m.cidr->prefix == m.cidr->bits() ? "/" + std::to_string(m.cidr->prefix) : "");
    else j["host"] = m.host;
    j["ports"] = ports_json(m.ports);
    j["protocol"] = std::string(to_string(m.protocol));
    j["sources"] = m.sources;
    return j;
}

std::vector<std::string> opened_by(const Policy& p, const Cidr& range) {
    std::vector<std::string> out;
    for (const auto& r : p.egress.allow) {
        if (r.cidr && range.contains(*r.cidr)) out.push_back("allow " + r.describe());
    }
    return out;
}

std::string cidr_text(const Cidr& c) { return c.to_string() + (c.prefix == c.bits() ? "/" + std::to_string(c.prefix) : ""); }

std::string valid_host_name_error(const std::string& host) {
    if (host.empty()) return "the host is empty";
    if (host.size() > 253) return "a host name has at most 253 characters";
    if (host.find('*') != std::string::npos)
        return "explain a concrete name (api.example.com), not a pattern";
    bool numeric = true;
    std::stringstream ss(host);
    std::string label;
    while (std::getline(ss, label, '.')) {
        if (label.empty() || label.size() > 63) return "every label of a host name has 1 to 63 characters";
        for (char c : label) {
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
                return std::string("character '") + c + "' is not allowed in a host name";
            if (!std::isdigit(static_cast<unsigned char>(c))) numeric = false;
        }
    }
    if (host.back() == '.') return "every label of a host name has 1 to 63 characters";
    if (numeric) return "'" + host + "' is not a valid IPv4 address";
    return "";
}

}  // namespace

// ---- diagnostics and checks ---------------------------------------------------------------

std::string Diagnostic::to_string(bool warning) const {
    return where.to_string() + ": " + (warning ? "warning: " : "") + message;
}

json Diagnostic::to_json() const {
    return {{"file", where.file}, {"line", where.line}, {"column", where.column}, {"message", message}};
}

std::vector<Diagnostic> lint_policy(const Policy& policy) {
    return lint(policy, [&](const std::vector<std::string>&) { return SourceLocation{policy.source, 0, 0}; });
}

namespace {

// Built in a named object: GCC 12 at -O3 reports -Wmaybe-uninitialized (a false positive) for
// the braced temporaries `{{file, 0, 0}, message}` pushed into a vector.
Diagnostic file_diagnostic(std::string file, int line, int column, std::string message) {
    Diagnostic d;
    d.where.file = std::move(file);
    d.where.line = line;
    d.where.column = column;
    d.message = std::move(message);
    return d;
}

}  // namespace

PolicyCheck check_policy_text(const std::string& text, const std::string& file) {
    PolicyCheck check;
    check.file = file;
    try {
        check.policy = parse_policy(text, file);
    } catch (const Error& e) {
        const auto& list = e.details().value("errors", json::array());
        for (const auto& item : list) {
            check.errors.push_back(file_diagnostic(item.value("file", file), item.value("line", 0),
                                                   item.value("column", 0), item.value("message", std::string())));
        }
        if (check.errors.empty()) check.errors.push_back(file_diagnostic(file, 0, 0, e.what()));
        return check;
    }
    Locator at = [&](const std::vector<std::string>& path) { return locate_key(text, file, path); };
    check.warnings = lint(*check.policy, at);
    if (auto w = unpinned_secrets_warning(*check.policy); !w.empty()) check.warnings.push_back({at({"env"}), w});
    try {
        (void)compile_egress(check.policy->egress, 1);
    } catch (const Error& e) {
        check.errors.push_back({at({"egress"}), e.what()});
    }
    // A policy directory finds policies by file name: a different name inside misleads.
    std::filesystem::path path(file);
    std::string stem = path.stem().string();
    if ((path.extension() == ".yaml" || path.extension() == ".yml") && stem != check.policy->name) {
        check.warnings.push_back({at({"name"}), "the policy is named '" + check.policy->name + "' but its file is " +
                                                    path.filename().string() + ": `--policy " + stem +
                                                    "` would load a policy named '" + check.policy->name + "'"});
    }
    std::stable_sort(check.warnings.begin(), check.warnings.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
    });
    return check;
}

PolicyCheck check_policy_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        PolicyCheck check;
        check.file = path;
        check.errors.push_back(file_diagnostic(path, 0, 0, errno_text("cannot read the policy", errno)));
        return check;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return check_policy_text(ss.str(), path);
}

// ---- explain ------------------------------------------------------------------------------

std::string Destination::to_string() const {
    std::string h = address ? (address->family == AF_INET6 ? "[" + address->to_string() + "]" : address->to_string())
                            : host;
    return h + ":" + std::to_string(port) + "/" + std::string(mcpwarden::to_string(protocol));
}

Destination parse_destination(std::string_view text) {
    const std::string form = " (write HOST_OR_IP:PORT[/PROTO], as api.github.com:443, 10.0.0.1:53/udp or [2001:db8::1]:443)";
    auto fail = [&](const std::string& why) -> Destination {
        throw Error(ErrorKind::usage, "--to " + std::string(text) + ": " + why + form);
    };
    Destination d;
    std::string_view rest = text;
    if (auto slash = rest.rfind('/'); slash != std::string_view::npos) {
        std::string proto(rest.substr(slash + 1));
        std::transform(proto.begin(), proto.end(), proto.begin(), [](unsigned char c) { return std::tolower(c); });
        if (proto == "tcp") d.protocol = Protocol::tcp;
        else if (proto == "udp") d.protocol = Protocol::udp;
        else return fail("the protocol must be tcp or udp, not '" + proto + "'");
        rest = rest.substr(0, slash);
    }
    std::string_view host, port;
    if (!rest.empty() && rest.front() == '[') {
        auto close = rest.find(']');
        if (close == std::string_view::npos) return fail("missing ']' after the IPv6 address");
        host = rest.substr(1, close - 1);
        auto after = rest.substr(close + 1);
        if (after.empty() || after.front() != ':') return fail("a port must follow the address: [" + std::string(host) + "]:PORT");
        port = after.substr(1);
        d.address = parse_address(host);
        if (!d.address || host.find(':') == std::string_view::npos) return fail("'" + std::string(host) + "' is not an IPv6 address");
    } else {
        auto colon = rest.rfind(':');
        if (colon == std::string_view::npos) return fail("a port is missing");
        host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) return fail("write an IPv6 address in brackets");
        if (host.empty()) return fail("the host is missing");
        d.address = parse_address(host);
        if (!d.address) {
            std::string name(host);
            std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
            if (name.size() > 1 && name.back() == '.') name.pop_back();
            if (auto why = valid_host_name_error(name); !why.empty()) return fail(why);
            d.host = name;
        }
    }
    unsigned value = 0;
    bool digits = !port.empty() && port.size() <= 5 &&
                  std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) value = static_cast<unsigned>(std::stoul(std::string(port)));
    if (!digits || value < 1 || value > 65535) return fail("the port must be a number from 1 to 65535, not '" + std::string(port) + "'");
    d.port = static_cast<std::uint16_t>(value);
    return d;
}

json Explanation::to_json() const {
    return {{"verdict", allowed ? "allowed" : "denied"}, {"allowed", allowed}, {"rule", rule},
            {"summary", summary}, {"notes", notes}};
}

Explanation explain(const Policy& p, const Destination& to) {
    Explanation x;
    std::string dest = to.to_string();
    std::string where = std::string(to_string(to.protocol)) + " " + dest.substr(0, dest.rfind('/'));
    std::vector<const EgressRule*> host_rules;
    for (const auto& r : p.egress.allow) {
        if (!r.cidr) host_rules.push_back(&r);
    }
    if (to.address) {
        CompiledEgress c = compile_egress(p.egress, 1);
        Decision d = decide(c, *to.address, to.port, to.protocol);
        x.allowed = d.allow;
        x.rule = describe_rule(c, d.rule, to.address);
        if (d.allow) x.summary = where + ": allowed by " + x.rule;
        else if (d.rule < MW_RULE_SPECIAL) x.summary = where + ": denied by " + x.rule;
        else x.summary = where + ": denied: " + x.rule;
        bool unspecified = true;
        for (int i = 0; i < to.address->bits() / 8; ++i) unspecified = unspecified && to.address->addr[i] == 0;
        if (unspecified)
            x.notes.push_back(to.address->to_string() + " reaches this host: it is decided as the loopback address");
        if (!d.allow && d.rule >= MW_RULE_SPECIAL) {
            std::vector<std::string> names;
            for (const auto* r : host_rules) {
                if (covers(*r, to.port, to.protocol)) names.push_back(r->host);
            }
            if (!names.empty()) {
                std::string list;
                for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
                x.notes.push_back("an address learned from a DNS answer for a name a host rule allows on this port (" +
                                  list + ") is admitted while that answer is valid; explain the name to see its rule");
            }
        }
        if (!d.allow && p.egress.audit_only)
            x.notes.push_back("the policy is audit_only: this connection is logged as would-be denied, and allowed");
        return x;
    }

    const EgressRule* decides = nullptr;
    std::vector<const EgressRule*> matching;
    for (const auto* r : host_rules) {
        if (!host_matches(r->host, to.host)) continue;
        matching.push_back(r);
        if (!decides && covers(*r, to.port, to.protocol)) decides = r;
    }
    if (decides) {
        x.allowed = true;
        x.rule = "allow " + decides->describe();
        x.summary = where + ": allowed by " + x.rule + ", once resolved: the addresses in DNS answers for " +
                    to.host + " are admitted on " + format_ports(ports_of(*decides)) + " " +
                    protocol_text(decides->protocol);
        for (const auto& dr : p.egress.deny) {
            if (dr.cidr && covers(dr, to.port, to.protocol))
                x.notes.push_back("deny wins: an answer address inside " + dr.cidr->to_string() +
                                  " stays denied (deny " + dr.describe() + ")");
        }
        x.notes.push_back("answers in reserved ranges (loopback, private, link-local) are admitted only if "
                          "the policy's dns section allows reserved answers (DNS rebinding)");
        x.notes.push_back("connecting to one of its addresses without resolving the name through "
                          "mcpwarden is decided by the CIDR rules alone");
        return x;
    }
    x.allowed = false;
    if (!matching.empty()) {
        x.rule = "default deny";
        x.summary = where + ": denied: " + to.host + " resolves (allow " + matching.front()->describe() +
                    "), but no rule allows " + std::to_string(to.port) + "/" + std::string(to_string(to.protocol)) +
                    ": default deny";
    } else {
        x.rule = "default deny";
        x.summary = where + ": denied: no host rule allows " + to.host + " (its DNS queries are refused)";
        for (const auto* r : host_rules) {
            if (r->host.rfind("*.", 0) != 0) continue;
            std::string parent = r->host.substr(2);
            if (host_matches(parent, to.host)) {
                x.notes.push_back(r->host + " (" + r->where.to_string() + ") does not match its apex " + parent +
                                  ": add a rule for host: " + parent);
            } else if (to.host.size() > parent.size() && to.host.ends_with("." + parent)) {
                x.notes.push_back(r->host + " (" + r->where.to_string() + ") matches one label only: " +
                                  "it allows x." + parent + ", not " + to.host);
            }
        }
    }
    if (p.egress.audit_only)
        x.notes.push_back("the policy is audit_only: denied connections are logged and allowed");
    return x;
}

json PathExplanation::to_json() const {
    return {{"path", path},
            {"access", fsrules::to_string(decision.access)},
            {"readable", decision.readable()},
            {"writable", decision.writable()},
            {"hidden", !decision.readable()},
            {"rule", {{"path", decision.rule.path},
                      {"access", fsrules::to_string(decision.rule.access)},
                      {"from_policy", decision.rule.from_policy},
                      {"why", decision.rule.why}}},
            {"summary", summary}};
}

PathExplanation explain_path(const Policy& p, std::string_view path, const std::string& state_dir) {
    std::string why;
    auto normal = fsrules::normalise_path(path, &why);
    if (!normal) throw Error(ErrorKind::usage, "--path: " + why, {{"path", std::string(path)}});
    PathExplanation x;
    x.path = *normal;
    fsrules::ViewContext ctx;
    ctx.state_dir = state_dir;
    x.decision = fsrules::decide(x.path, p.filesystem, ctx);
    const auto& d = x.decision;
    std::string what = !d.readable() ? "hidden"
                       : d.access == fsrules::Access::private_tmp ? "readable and writable (private to the sandbox)"
                       : d.writable() ? "readable and writable"
                                      : "readable, not writable";
    x.summary = x.path + ": " + what + ", by " + d.rule.describe();
    if (path_inside_state_dir_note(x.path, state_dir)) {
        x.summary += "; the sandbox's own cache there (" + state_dir + "/cache/" + p.name +
                     "/<uid>) and its HOME are writable";
    }
    return x;
}

// ---- show ---------------------------------------------------------------------------------

json normalised_policy_json(const Policy& p) {
    auto opt = [](const auto& v) -> json { return v ? json(*v) : json(nullptr); };
    json j;
    j["name"] = p.name;
    j["description"] = p.description;
    j["file"] = p.source;
    j["user"] = p.user.empty() ? json(nullptr) : json(p.user);
    j["identity"] = p.user.empty() ? "a uid of its own per client (mcpwarden-<uid>)" : "the fixed account " + p.user;
    json fsj = {{"read_only", p.filesystem.read_only}, {"read_write", p.filesystem.read_write},
                {"hide", p.filesystem.hide}};
    json view = json::array();
    for (const auto& r : fsrules::view_rules(p.filesystem, {})) {
        view.push_back({{"path", r.path}, {"access", fsrules::to_string(r.access)}, {"from_policy", r.from_policy},
                        {"why", r.why}});
    }
    fsj["view"] = view;
    j["filesystem"] = fsj;
    j["limits"] = {{"memory_bytes", opt(p.limits.memory_bytes)},
                   {"pids", opt(p.limits.pids)},
                   {"cpu_millicores", opt(p.limits.cpu_millicores)},
                   {"timeout_ms", p.limits.timeout ? json(p.limits.timeout->count()) : json(nullptr)}};
    json rules = json::array();
    for (const auto& m : merge_rules(p.egress.allow, "allow")) rules.push_back(merged_json(m));
    for (const auto& m : merge_rules(p.egress.deny, "deny")) rules.push_back(merged_json(m));
    json reserved = json::array();
    for (const auto& r : reserved_ranges()) {
        auto by = opened_by(p, r.cidr);
        reserved.push_back({{"cidr", cidr_text(r.cidr)}, {"what", r.what},
                            {"action", by.empty() ? "deny" : "deny, except where an allow rule inside it opens it"},
                            {"opened_by", by}});
    }
    j["egress"] = {{"default", "deny"},
                   {"deny_wins", true},
                   {"audit_only", p.egress.audit_only},
                   {"rules", rules},
                   {"reserved", reserved},
                   {"names", "DNS queries for names no host rule allows are refused"}};
    j["dns"] = {{"upstream", p.dns.upstream.empty() ? json("/etc/resolv.conf") : json(p.dns.upstream)},
                {"min_ttl_ms", std::chrono::milliseconds(p.dns.min_ttl.value_or(Dns::kDefaultMinTtl)).count()},
                {"max_learned", p.dns.max_learned.value_or(Dns::kDefaultMaxLearned)},
                {"allow_reserved_answers", p.dns.allow_reserved_answers}};
    auto m = McpConfig::from_policy(p.mcp);
    json timeouts = json::object();
    for (const auto& [tool, d] : m.tool_timeouts) timeouts[tool] = d.count();
    j["mcp"] = {{"enabled", p.mcp.enabled},
                {"call_timeout_ms", m.call_timeout.count()},
                {"tool_timeouts_ms", timeouts},
                {"max_message_bytes", m.max_message_bytes},
                {"max_depth", m.max_depth},
                {"max_string_bytes", m.max_string_bytes},
                {"max_array_length", m.max_array_length},
                {"max_content_chars", m.max_content_chars},
                {"max_result_bytes", m.max_result_bytes},
                {"tools", {{"allow", m.tools_allow.empty() ? std::vector<std::string>{"*"} : m.tools_allow},
                           {"deny", m.tools_deny}}}};
    json set = json::object();
    for (const auto& [name, v] : p.env.set) {
        set[name] = v.file ? json{{"file", *v.file}} : json{{"value", v.value}};
    }
    j["env"] = {{"pass", p.env.pass}, {"set", set}};
    return j;
}

std::string normalised_policy_text(const Policy& p) {
    std::ostringstream o;
    o << "policy " << p.name << (p.source.empty() ? "" : " (" + p.source + ")") << "\n";
    if (!p.description.empty()) o << "  " << p.description << "\n";
    o << "user: " << (p.user.empty() ? "a uid of its own per client (mcpwarden-<uid>; default)" : p.user + " (a fixed account)") << "\n";
    o << "filesystem: the default view" << (p.filesystem.read_only.empty() && p.filesystem.read_write.empty() && p.filesystem.hide.empty() ? "" : " and the policy's paths") << " (the most specific path decides):\n";
    for (const auto& r : fsrules::view_rules(p.filesystem, {})) {
        std::string access = fsrules::to_string(r.access);
        o << "  " << access << std::string(access.size() < 11 ? 11 - access.size() : 1, ' ') << r.path << "  (" << r.why << ")\n";
    }
    o << "limits:\n";
    const std::string none = "no limit";
    o << "  memory:  "
      << (p.limits.memory_bytes ? format_size(*p.limits.memory_bytes) + " (" + std::to_string(*p.limits.memory_bytes) + " bytes), no swap" : none)
      << "\n";
    o << "  pids:    " << (p.limits.pids ? std::to_string(*p.limits.pids) : none) << "\n";
    o << "  cpu:     " << (p.limits.cpu_millicores ? canonical_cpu(*p.limits.cpu_millicores) : none) << "\n";
    o << "  timeout: " << (p.limits.timeout ? canonical_duration(*p.limits.timeout) : none) << "\n";

    o << "egress: default deny; deny wins over allow" << (p.egress.audit_only ? "; AUDIT ONLY (denials are logged, not enforced)" : "") << "\n";
    auto allow = merge_rules(p.egress.allow, "allow");
    auto deny = merge_rules(p.egress.deny, "deny");
    o << "  allow:" << (allow.empty() ? " nothing" : "") << "\n";
    for (const auto& m : allow) {
        o << "    " << merged_text(m) << "  (";
        for (size_t i = 0; i < m.sources.size(); ++i) o << (i ? ", " : "") << m.sources[i];
        o << ")\n";
    }
    o << "  deny:" << (deny.empty() ? " no explicit rules" : "") << "\n";
    for (const auto& m : deny) {
        o << "    " << merged_text(m) << "  (";
        for (size_t i = 0; i < m.sources.size(); ++i) o << (i ? ", " : "") << m.sources[i];
        o << ")\n";
    }
    o << "  reserved ranges, denied unless an allow rule names a network inside them:\n";
    for (const auto& r : reserved_ranges()) {
        std::string cidr = cidr_text(r.cidr);
        o << "    " << cidr << std::string(cidr.size() < 18 ? 18 - cidr.size() : 1, ' ') << r.what;
        auto by = opened_by(p, r.cidr);
        if (!by.empty()) o << "  (opened in part by " << plural(by.size(), "rule") << ": " << by.front() << (by.size() > 1 ? ", ..." : "") << ")";
        o << "\n";
    }
    o << "  names: DNS answers for names a host rule allows are admitted on that rule's ports; "
         "queries for other names are refused\n";
    o << "dns upstream: ";
    if (p.dns.upstream.empty()) o << "/etc/resolv.conf";
    for (size_t i = 0; i < p.dns.upstream.size(); ++i) o << (i ? ", " : "") << p.dns.upstream[i];
    o << "\n";
    o << "  min_ttl:     " << canonical_duration(p.dns.min_ttl.value_or(Dns::kDefaultMinTtl))
      << " (learned addresses stay allowed at least this long)\n";
    o << "  max_learned: " << p.dns.max_learned.value_or(Dns::kDefaultMaxLearned)
      << " addresses per sandbox\n";
    o << "  reserved answers: "
      << (p.dns.allow_reserved_answers ? "ADMITTED (answers in loopback/private/link-local ranges open them)"
                                       : "dropped (an allowed name cannot open loopback, private or link-local addresses)")
      << "\n";
    auto m = McpConfig::from_policy(p.mcp);
    o << "mcp: " << (p.mcp.enabled ? "on (the policy has an mcp section)" : "off (no mcp section; `run --mcp` turns it on with these limits)") << "\n";
    o << "  call_timeout:      " << canonical_duration(m.call_timeout) << "\n";
    for (const auto& [tool, d] : m.tool_timeouts) o << "  timeout of " << tool << ": " << canonical_duration(d) << "\n";
    o << "  max_message_bytes: " << format_size(m.max_message_bytes) << "\n";
    o << "  max_depth:         " << m.max_depth << "\n";
    o << "  max_string_bytes:  " << format_size(m.max_string_bytes) << "\n";
    o << "  max_array_length:  " << m.max_array_length << "\n";
    o << "  max_content_chars: " << m.max_content_chars << "\n";
    o << "  max_result_bytes:  " << format_size(m.max_result_bytes) << "\n";
    auto join = [](const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
        return s;
    };
    o << "  tools allowed:     " << (m.tools_allow.empty() ? "*" : join(m.tools_allow)) << "\n";
    o << "  tools denied:      " << (m.tools_deny.empty() ? "none" : join(m.tools_deny)) << "\n";
    o << "env:\n";
    o << "  pass: " << (p.env.pass.empty() ? "nothing beyond the defaults" : join(p.env.pass)) << "\n";
    for (const auto& [name, v] : p.env.set) {
        o << "  set " << name << (v.file ? " from file " + *v.file : " = " + v.value) << "\n";
    }
    return o.str();
}

}  // namespace mcpwarden
