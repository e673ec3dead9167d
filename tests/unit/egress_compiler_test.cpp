// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <chrono>

#include "../common/decision_cases.h"
#include "egress_compiler.h"
#include "policy.h"

using namespace mcpwarden;

namespace {

Cidr host(const char* text) {
    auto c = parse_address(text);
    EXPECT_TRUE(c) << text;
    return *c;
}

}  // namespace

TEST(EgressCompiler, DecisionTable) {
    Policy p = parse_policy(cases::kPolicy, "table.yaml");
    auto compiled = compile_egress(p.egress, 42);
    for (const auto& c : cases::table()) {
        auto d = decide(compiled, host(c.address), c.port, c.protocol);
        EXPECT_EQ(d.allow, c.allow) << c.address << ":" << c.port << "/" << to_string(c.protocol)
                                    << " rule: " << describe_rule(compiled, d.rule);
    }
}

TEST(EgressCompiler, RuleAttribution) {
    Policy p = parse_policy(cases::kPolicy, "table.yaml");
    auto compiled = compile_egress(p.egress, 42);
    auto d = decide(compiled, host("10.1.9.9"), 443, Protocol::tcp);
    EXPECT_EQ(describe_rule(compiled, d.rule).rfind("deny cidr 10.1.0.0/16 ports 443 (table.yaml:", 0), 0u)
        << describe_rule(compiled, d.rule);
    d = decide(compiled, host("198.51.100.8"), 1, Protocol::tcp);
    EXPECT_EQ(describe_rule(compiled, d.rule), "default deny");
    d = decide(compiled, host("169.254.169.254"), 80, Protocol::tcp);
    EXPECT_NE(describe_rule(compiled, d.rule, host("169.254.169.254")).find("169.254.0.0/16"), std::string::npos);
    d = decide(compiled, host("10.1.2.3"), 80, Protocol::tcp);
    EXPECT_TRUE(d.allow);
    EXPECT_EQ(describe_rule(compiled, d.rule).rfind("allow cidr 10.1.2.0/24", 0), 0u);
}

TEST(EgressCompiler, EmptyPolicyDeniesEverything) {
    auto compiled = compile_egress(Egress{}, 7);
    for (const char* a : {"1.1.1.1", "127.0.0.1", "::1", "2606:4700::1"}) {
        EXPECT_FALSE(decide(compiled, host(a), 443, Protocol::tcp).allow) << a;
    }
    // Only the reserved ranges have entries (so audits can name them).
    EXPECT_EQ(compiled.v4.size(), 9u);
    EXPECT_TRUE(compiled.portsets.empty());
}

TEST(EgressCompiler, KeysCarryThePolicyId) {
    auto compiled = compile_egress(Egress{}, 0x0102030405060708ull);
    ASSERT_FALSE(compiled.v4.empty());
    const auto& k = compiled.v4.front().first;
    EXPECT_EQ(k.policy[0], 1);
    EXPECT_EQ(k.policy[7], 8);
    EXPECT_GE(k.prefixlen, 64u);
}

TEST(EgressCompiler, HundredThousandRulesCompile) {
    Egress e;
    for (int i = 0; i < 100000; ++i) {
        EgressRule r;
        Cidr c;
        c.family = AF_INET;
        c.prefix = 32;
        std::uint32_t a = 0x0b000000u + static_cast<std::uint32_t>(i) * 7;  // 11.0.0.0/8 upwards
        c.addr[0] = a >> 24;
        c.addr[1] = (a >> 16) & 0xff;
        c.addr[2] = (a >> 8) & 0xff;
        c.addr[3] = a & 0xff;
        r.cidr = c;
        r.ports = {{443, 443}};
        e.allow.push_back(r);
    }
    auto compiled = compile_egress(e, 9);
    EXPECT_EQ(compiled.v4.size(), 100000u + 9u);
    EXPECT_TRUE(decide(compiled, host("11.0.0.7"), 443, Protocol::tcp).allow);
    EXPECT_FALSE(decide(compiled, host("11.0.0.8"), 443, Protocol::tcp).allow);
}
