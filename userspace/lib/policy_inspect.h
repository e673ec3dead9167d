// SPDX-License-Identifier: Apache-2.0
// What `mcpwarden policy validate|explain|show` compute: checks beyond parsing, the verdict for
// one destination with the rule that decides it, and the normalised policy. Pure: no kernel
// access; the verdict for addresses comes from the userspace model of the kernel decision
// (compile_egress + decide), so it is what the BPF programs would do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fs_rules.h"
#include "net.h"
#include "policy.h"

namespace mcpwarden {

// One problem of a policy file, with its position.
struct Diagnostic {
    SourceLocation where;
    std::string message;
    // "file:line:column: message" (errors) or "file:line:column: warning: message".
    std::string to_string(bool warning) const;
    nlohmann::json to_json() const;  // {file, line, column, message}
};

// The outcome of checking one policy file: parse errors (all of them), or the policy and the
// warnings of the checks beyond parsing (lint_policy).
struct PolicyCheck {
    std::string file;
    std::optional<Policy> policy;
    std::vector<Diagnostic> errors;
    std::vector<Diagnostic> warnings;
    bool ok() const { return errors.empty(); }
};

PolicyCheck check_policy_text(const std::string& text, const std::string& file);
PolicyCheck check_policy_file(const std::string& path);  // an unreadable file is an error

// Checks beyond parsing, each a warning (the policy works, but probably not as meant):
//   - duplicate rules, and rules overlapping another of the same list on some ports;
//   - an allow rule made redundant by a wider one (CIDR, or a wildcard host rule);
//   - an allow rule wholly or partly cancelled by a deny rule covering it (deny wins);
//   - an allow rule for every address (/0), or one that opens cloud metadata (169.254.169.254);
//   - a user that does not exist on this host;
//   - mcp.tool_timeouts naming a tool the tool filters refuse.
std::vector<Diagnostic> lint_policy(const Policy& policy);

// A destination of `policy explain --to`: HOST_OR_IP:PORT[/PROTO], IPv6 in brackets
// ([2001:db8::1]:443), protocol tcp (default) or udp.
struct Destination {
    std::optional<Cidr> address;  // an address (/32 or /128), or
    std::string host;             // a host name (lower case, without a trailing dot)
    std::uint16_t port = 0;
    Protocol protocol = Protocol::tcp;
    std::string to_string() const;  // "api.github.com:443/tcp", "[::1]:53/udp"
};

// Throws Error(usage) saying what is wrong and how to write it.
Destination parse_destination(std::string_view text);

struct Explanation {
    bool allowed = false;
    // The rule that decides: "allow cidr 10.0.0.0/8 ports 443 tcp (file:3:7)", "default deny",
    // "default deny: reserved range 127.0.0.0/8 (loopback) ...", "allow host api.github.com ...".
    std::string rule;
    std::string summary;             // one line for people: "tcp 10.1.2.3:443: allowed by ..."
    std::vector<std::string> notes;  // what else matters (audit-only, DNS, wildcard hints)
    nlohmann::json to_json() const;
};

Explanation explain(const Policy& policy, const Destination& to);

// `policy explain --path`: what the server sees at a path, and the rule that decides
// (fs_rules.h: the default view and the policy's filesystem section).
struct PathExplanation {
    std::string path;  // normalised
    fsrules::Decision decision;
    std::string summary;  // "/home/a: hidden, by hidden /home (default: users' homes are hidden)"
    nlohmann::json to_json() const;
};
// Throws Error(usage) for a path that is not absolute and normalisable.
PathExplanation explain_path(const Policy& policy, std::string_view path,
                             const std::string& state_dir = "/var/lib/mcpwarden");

// The normalised policy: limits in canonical units, rules of the same action, target and
// protocol merged (their port ranges united), defaults made explicit (default deny, reserved
// ranges, name resolution, MCP limits).
nlohmann::json normalised_policy_json(const Policy& policy);
std::string normalised_policy_text(const Policy& policy);

}  // namespace mcpwarden
