// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "env_refs.h"
#include "error.h"
#include "policy.h"
#include "policy_errors.h"

using namespace mcpwarden;
using namespace std::chrono_literals;

using policytest::errors_of;
using policytest::expect_error_at;

TEST(Policy, FullExample) {
    Policy p = parse_policy(R"(name: github
description: GitHub MCP server
limits: { memory: 512Mi, pids: 256, cpu: 1.5, timeout: 10m }
egress:
  allow:
    - host: api.github.com
      ports: [443]
    - cidr: 140.82.112.0/20
      ports: ["443", "8000-8080"]
      protocol: tcp
  deny:
    - cidr: 169.254.0.0/16
env:
  pass: [LANG]
  set: { GITHUB_TOKEN: { file: /etc/secret }, MODE: fast }
mcp:
  call_timeout: 30s
  max_message_bytes: 4Mi
  max_depth: 64
  tools: { allow: ["*"], deny: ["delete_*"] }
)", "github.yaml");
    EXPECT_EQ(p.name, "github");
    EXPECT_EQ(p.limits.memory_bytes, 512ull << 20);
    EXPECT_EQ(p.limits.pids, 256u);
    EXPECT_EQ(p.limits.cpu_millicores, 1500u);
    EXPECT_EQ(p.limits.timeout, 600000ms);
    ASSERT_EQ(p.egress.allow.size(), 2u);
    EXPECT_EQ(p.egress.allow[0].host, "api.github.com");
    EXPECT_EQ(p.egress.allow[0].ports.size(), 1u);
    EXPECT_EQ(p.egress.allow[1].cidr->to_string(), "140.82.112.0/20");
    EXPECT_EQ(p.egress.allow[1].protocol, Protocol::tcp);
    ASSERT_EQ(p.egress.allow[1].ports.size(), 2u);
    EXPECT_EQ(p.egress.allow[1].ports[1].lo, 8000);
    EXPECT_EQ(p.egress.allow[1].ports[1].hi, 8080);
    EXPECT_EQ(p.egress.allow[1].where.line, 8);
    EXPECT_EQ(p.egress.deny.size(), 1u);
    EXPECT_EQ(p.env.pass, std::vector<std::string>{"LANG"});
    EXPECT_EQ(p.env.set.at("GITHUB_TOKEN").file, "/etc/secret");
    EXPECT_EQ(p.env.set.at("MODE").value, "fast");
    EXPECT_TRUE(p.mcp.enabled);
    EXPECT_EQ(p.mcp.call_timeout, 30000ms);
    EXPECT_EQ(p.mcp.max_message_bytes, 4ull << 20);
    EXPECT_EQ(p.mcp.tools_deny, std::vector<std::string>{"delete_*"});
}

TEST(Policy, MinimalPolicyHasNoLimits) {
    Policy p = parse_policy("name: tiny\n", "t.yaml");
    EXPECT_EQ(p.name, "tiny");
    EXPECT_FALSE(p.limits.memory_bytes);
    EXPECT_FALSE(p.has_egress);
    EXPECT_FALSE(p.mcp.enabled);
}

TEST(Policy, UnknownKeyNamesLineAndColumn) {
    expect_error_at("name: x\nlimits:\n  memroy: 1G\n", 3, 3, "unknown key 'memroy'");
    expect_error_at("name: x\nfoo: 1\n", 2, 1, "unknown key 'foo'");
}

TEST(Policy, BadValuesNameLineAndColumn) {
    expect_error_at("name: x\nlimits: { memory: lots }\n", 2, 19, "limits.memory");
    expect_error_at("name: x\nlimits:\n  timeout: 5 fortnights\n", 3, 12, "limits.timeout");
    expect_error_at("name: x\nlimits:\n  pids: -3\n", 3, 9, "limits.pids");
    expect_error_at("name: x\nlimits:\n  cpu: many\n", 3, 8, "limits.cpu");
    expect_error_at("name: x\negress:\n  allow:\n    - cidr: 10.0.0.1/8\n", 4, 13, "host bits");
    expect_error_at("name: x\negress:\n  allow:\n    - cidr: 10.0.0.0/8\n      ports: [70000]\n", 5, 15, "out of range");
    expect_error_at("name: x\negress:\n  allow:\n    - cidr: ::/0\n      protocol: icmp\n", 5, 17, "protocol");
    expect_error_at("name: bad name!\n", 1, 7, "name");
}

TEST(Policy, DenyByHostNameIsExplained) {
    expect_error_at("name: x\negress:\n  deny:\n    - host: evil.example\n", 4, 13,
                    "host names can only be allowed");
}

TEST(Policy, EveryErrorIsReported) {
    auto errors = errors_of("name: x\nlimits: { memory: lots, pids: many }\nbogus: 1\n");
    EXPECT_EQ(errors.size(), 3u);
}

TEST(Policy, YamlSyntaxErrorHasPosition) {
    auto errors = errors_of("name: x\nlimits: { memory: 1G\n");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_GE(errors[0]["line"].get<int>(), 2);
    EXPECT_NE(errors[0]["message"].get<std::string>().find("YAML syntax"), std::string::npos);
}

TEST(Policy, MissingNameAndEmptyFile) {
    errors_of("");
    errors_of("limits: { memory: 1G }\n");
}

TEST(Policy, MessageListsFileLineColumn) {
    try {
        parse_policy("name: x\nfoo: 1\n", "dir/p.yaml");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("dir/p.yaml:2:1: unknown key 'foo'"), std::string::npos)
            << e.what();
    }
}

TEST(Policy, MissingFile) {
    EXPECT_THROW(load_policy_file("/nonexistent/policy.yaml"), Error);
}

TEST(Policy, EnvSetNamesTheSandboxsOwnVariables) {
    Policy p = parse_policy(R"(name: memory
env:
  set:
    MEMORY_FILE_PATH: "${XDG_CACHE_HOME}/memory.jsonl"
    BOTH: "${HOME}:${TMPDIR}"
    LITERAL: "$${HOME} costs $5"
    SECRET: { file: "/etc/${HOME}" }
)", "memory.yaml");
    std::map<std::string, std::string> vars{{"XDG_CACHE_HOME", "/var/lib/mcpwarden/cache/memory/1879048200"},
                                            {"HOME", "/h"}, {"TMPDIR", "/t"}};
    EXPECT_EQ(expand_sandbox_references(p.env.set.at("MEMORY_FILE_PATH").value, vars),
              "/var/lib/mcpwarden/cache/memory/1879048200/memory.jsonl");
    EXPECT_EQ(expand_sandbox_references(p.env.set.at("BOTH").value, vars), "/h:/t");
    EXPECT_EQ(expand_sandbox_references(p.env.set.at("LITERAL").value, vars), "${HOME} costs $5");
    // A file's name is taken as written (never expanded, so not checked either).
    EXPECT_EQ(p.env.set.at("SECRET").file, "/etc/${HOME}");
    EXPECT_THROW(expand_sandbox_references("${GITHUB_TOKEN}", vars), std::invalid_argument);
    EXPECT_THROW(expand_sandbox_references("${HOME", vars), std::invalid_argument);
}

TEST(Policy, EnvSetUnknownReferenceNamesLineAndColumn) {
    // Only what mcpwarden itself sets can be named: not the host's variables, which a value
    // would otherwise carry into the sandbox unseen.
    expect_error_at("name: x\nenv:\n  set:\n    A: \"${SSH_AUTH_SOCK}/x\"\n", 4, 8,
                    "env.set.A: ${SSH_AUTH_SOCK} is not a variable of the sandbox (one of HOME, TMPDIR, XDG_CACHE_HOME");
    expect_error_at("name: x\nenv:\n  set: { B: { value: \"${HOME\" } }\n", 3, 22, "env.set.B: '${' without a closing '}'");
}
