// SPDX-License-Identifier: Apache-2.0
// Compiles a policy's egress section into the map entries the kernel programs look up
// (semantics in bpf/mcpwarden.h). Pure: no kernel access, unit-tested without root.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcpwarden.h"
#include "net.h"
#include "policy.h"

namespace mcpwarden {

struct CompiledEgress {
    std::uint64_t policy_id = 0;
    std::vector<std::pair<mw_key4, mw_rule_value>> v4;
    std::vector<std::pair<mw_key6, mw_rule_value>> v6;
    std::vector<std::pair<mw_portset_key, mw_portset>> portsets;
    std::vector<std::string> rules;  // rule index -> description ("allow cidr ... (file:3:5)")
};

// Rule indexes: allow rules first (in file order), then deny rules.
CompiledEgress compile_egress(const Egress& egress, std::uint64_t policy_id);

// What a rule index or special code means, for audit events and `policy explain`.
std::string describe_rule(const CompiledEgress& c, std::uint32_t rule,
                          const std::optional<Cidr>& address = std::nullopt);

// The reserved range an address falls in ("127.0.0.0/8 (loopback)"), if any.
std::optional<std::string> reserved_range_of(const Cidr& address);

// The entry for one address learned from DNS: every CIDR rule covering it (as compile_egress
// would merge them) with the given host rules' ports allowed on top. Portsets it needs get ids
// from next_set_id upwards. The key is the address as a /32 or /128.
struct LearnedEntry {
    int family = 0;
    mw_key4 key4{};
    mw_key6 key6{};
    mw_rule_value value{};
    std::vector<std::pair<mw_portset_key, mw_portset>> portsets;
};
LearnedEntry compile_learned(const Egress& egress, std::uint64_t policy_id, const Cidr& address,
                             const std::vector<std::uint32_t>& host_rules, std::uint32_t& next_set_id);

struct Decision {
    bool allow = false;
    std::uint32_t rule = MW_RULE_DEFAULT;
};

// The kernel's decision, computed in userspace over the compiled entries (explain, tests).
// address is a host address (/32 or /128); protocol tcp or udp.
Decision decide(const CompiledEgress& c, const Cidr& address, std::uint16_t port, Protocol protocol);

}  // namespace mcpwarden
