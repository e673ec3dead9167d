// SPDX-License-Identifier: Apache-2.0
// The agent's pure parts: configuration, API request parsing and validation, authorization,
// limits within the policy's, and admission control.
#include <gtest/gtest.h>

#include "agent_admission.h"
#include "agent_config.h"
#include "agent_protocol.h"
#include "attachment.h"
#include "error.h"

using namespace mcpwarden;
using json = nlohmann::json;

namespace {

// The message of the Error a config text raises ("" when it parses).
std::string config_error(const std::string& text) {
    try {
        parse_agent_config(text, "agent.yaml");
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::usage);
        return e.what();
    }
    return "";
}

}  // namespace

TEST(AgentConfig, FullConfigParses) {
    auto c = parse_agent_config(R"(
socket: /tmp/a.sock
socket_mode: "0660"
policy_dir: /etc/mcpwarden/policies
state_dir: /var/lib/mw
audit: /var/log/mw.jsonl
clients:
  - uid: 1000
    policies: [example, github]
  - user: alice
    policies: "*"
  - group: mcp
    policies: [slack]
  - gid: 50
    policies: ["*"]
limits:
  max_sandboxes: 1000
  max_per_policy: 100
  queue_length: 10
  queue_timeout: 2s
  max_request_bytes: 64Ki
defaults:
  limits: { memory: 256Mi, pids: 64, cpu: 500m, timeout: 1h }
  allow_degraded: true
)", "agent.yaml");
    EXPECT_EQ(c.socket, "/tmp/a.sock");
    EXPECT_EQ(c.socket_mode, 0660u);
    ASSERT_EQ(c.clients.size(), 4u);
    EXPECT_EQ(c.clients[0].who, AgentClientRule::Who::uid);
    EXPECT_EQ(c.clients[0].id, 1000u);
    EXPECT_EQ(c.clients[0].policies, (std::vector<std::string>{"example", "github"}));
    EXPECT_TRUE(c.clients[1].all_policies);
    EXPECT_EQ(c.clients[2].name, "mcp");
    EXPECT_EQ(c.limits.max_sandboxes, 1000u);
    EXPECT_EQ(c.limits.max_per_policy, 100u);
    EXPECT_EQ(c.limits.queue_length, 10u);
    EXPECT_EQ(c.limits.queue_timeout.count(), 2000);
    EXPECT_EQ(c.limits.max_request_bytes, 65536u);
    EXPECT_EQ(*c.default_limits.memory_bytes, 256u << 20);
    EXPECT_EQ(*c.default_limits.cpu_millicores, 500u);
    EXPECT_TRUE(c.allow_degraded);
}

TEST(AgentConfig, EmptyFileIsEveryDefault) {
    auto c = parse_agent_config("# nothing\n", "agent.yaml");
    EXPECT_EQ(c.socket, kDefaultAgentSocket);
    EXPECT_TRUE(c.clients.empty());
    EXPECT_EQ(c.limits.max_sandboxes, 64u);
}

TEST(AgentConfig, ErrorsNameFileLineColumn) {
    std::string unknown = config_error("socket: /a\nsockett: /b\n");
    EXPECT_EQ(unknown.rfind("agent.yaml:2:1: unknown key 'sockett' in the agent configuration (known: allow_unpinned_secrets, audit, ", 0), 0u)
        << unknown;
    EXPECT_NE(unknown.find(" socket, socket_mode, state_dir, uid_range)"), std::string::npos) << unknown;
    EXPECT_EQ(config_error("limits:\n  max_sandboxes: many\n"), "agent.yaml:2:18: max_sandboxes must be a whole number");
    EXPECT_EQ(config_error("limits:\n  queue_timeout: 0s\n"),
              "agent.yaml:2:18: queue_timeout must be a duration above 0, as 30s or 2m");
    EXPECT_EQ(config_error("clients:\n  - uid: 1\n    user: bob\n    policies: [a]\n"),
              "agent.yaml:2:5: a clients entry names exactly one of uid, gid, user and group");
    EXPECT_EQ(config_error("clients:\n  - uid: 1\n"), "agent.yaml:2:5: a clients entry needs policies: [NAME, ...] (or \"*\")");
    EXPECT_EQ(config_error("clients:\n  - uid: 1\n    policies: [../x]\n"),
              "agent.yaml:3:16: a policy name must be a non-empty name without '/'");
    EXPECT_EQ(config_error("socket: relative.sock\n"), "agent.yaml:1:9: socket must be an absolute path");
    EXPECT_EQ(config_error("socket: /a\nsocket: /b\n"), "agent.yaml:2:1: duplicate key 'socket' in the agent configuration");
    EXPECT_EQ(config_error("defaults:\n  limits: { memory: lots }\n"),
              "agent.yaml:2:21: memory must be a size, as 256Mi (size must start with a number, as in 64M, 512Mi or 1G)")
        << "the units parser's reason is kept";
    // A YAML syntax error: libyaml's position.
    std::string syntax = config_error("socket: [unclosed\n");
    EXPECT_EQ(syntax.rfind("agent.yaml:", 0), 0u) << syntax;
    // Every problem, not only the first.
    std::string two = config_error("a: 1\nb: 2\n");
    EXPECT_NE(two.find("agent.yaml:1:1:"), std::string::npos);
    EXPECT_NE(two.find("agent.yaml:2:1:"), std::string::npos);
}

TEST(AgentConfig, ErrorDetailsListEachProblem) {
    try {
        parse_agent_config("limits:\n  max_sandboxes: 0\n", "f.yaml");
        FAIL();
    } catch (const Error& e) {
        const auto& errors = e.details()["errors"];
        ASSERT_EQ(errors.size(), 1u);
        EXPECT_EQ(errors[0]["file"], "f.yaml");
        EXPECT_EQ(errors[0]["line"], 2);
        EXPECT_EQ(errors[0]["column"], 18);
    }
}

TEST(AgentAuthorization, ByUidUserGroupGid) {
    auto c = parse_agent_config(R"(
clients:
  - uid: 1000
    policies: [example]
  - user: alice
    policies: "*"
  - group: mcp
    policies: [slack]
  - gid: 50
    policies: [github]
)", "a.yaml");
    PeerIdentity root;  // uid 0
    EXPECT_TRUE(peer_known(c, root));
    EXPECT_TRUE(peer_may_use(c, root, "anything"));

    PeerIdentity u1000{1000, 1000, 1, "", {{1000, ""}}};
    EXPECT_TRUE(peer_may_use(c, u1000, "example"));
    EXPECT_FALSE(peer_may_use(c, u1000, "github"));

    PeerIdentity alice{1001, 1001, 1, "alice", {{1001, "alice"}}};
    EXPECT_TRUE(peer_may_use(c, alice, "github"));

    PeerIdentity bob{1002, 1002, 1, "bob", {{1002, "bob"}, {300, "mcp"}, {50, "staff"}}};
    EXPECT_TRUE(peer_known(c, bob));
    EXPECT_TRUE(peer_may_use(c, bob, "slack"));
    EXPECT_TRUE(peer_may_use(c, bob, "github"));
    EXPECT_FALSE(peer_may_use(c, bob, "example"));

    PeerIdentity eve{1003, 1003, 1, "eve", {{1003, "eve"}}};
    EXPECT_FALSE(peer_known(c, eve));
    EXPECT_FALSE(peer_may_use(c, eve, "example"));
}

TEST(AgentLimits, RequestMayOnlyLower) {
    Limits policy, asked, defaults;
    policy.memory_bytes = 512u << 20;
    policy.pids = 100;
    defaults.timeout = std::chrono::milliseconds(60000);
    defaults.pids = 7;
    asked.memory_bytes = 64u << 20;
    auto l = effective_limits(policy, asked, defaults);
    EXPECT_EQ(*l.memory_bytes, 64u << 20);
    EXPECT_EQ(*l.pids, 100u) << "the policy's, not the default";
    EXPECT_EQ(l.timeout->count(), 60000) << "the default where neither sets one";
    EXPECT_FALSE(l.cpu_millicores);

    asked.pids = 101;
    try {
        effective_limits(policy, asked, defaults);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::input_invalid);
        EXPECT_EQ(e.details()["limit_name"], "pids");
        EXPECT_EQ(e.details()["limit"], "100");
        EXPECT_EQ(e.details()["observed"], "101");
    }
}

TEST(AgentProtocol, ParsesCreate) {
    auto p = parse_api_request(
        R"({"v":1,"id":7,"op":"create","policy":"example","command":["srv","--x"],"env":["A=1"],)"
        R"("limits":{"memory":"64Mi","pids":8,"cpu":0.5,"timeout":"30s"},"stdio":"return","mcp":true})",
        1 << 20);
    ASSERT_TRUE(p.request) << p.error.dump();
    EXPECT_EQ(p.request->op, "create");
    EXPECT_EQ(p.request->id, 7);
    auto s = sandbox_request(*p.request);
    EXPECT_EQ(s.policy, "example");
    EXPECT_EQ(s.command, (std::vector<std::string>{"srv", "--x"}));
    EXPECT_EQ(s.env, (std::vector<std::string>{"A=1"}));
    EXPECT_EQ(*s.limits.memory_bytes, 64u << 20);
    EXPECT_EQ(*s.limits.pids, 8u);
    EXPECT_EQ(*s.limits.cpu_millicores, 500u);
    EXPECT_EQ(s.limits.timeout->count(), 30000);
    EXPECT_EQ(s.stdio, SandboxRequest::Stdio::returned);
    EXPECT_TRUE(s.mcp);
}

TEST(AgentProtocol, RejectsBadEnvelopes) {
    auto kind_of = [](std::string_view line, std::size_t max = 1 << 20) {
        auto p = parse_api_request(line, max);
        EXPECT_FALSE(p.request) << line;
        return p.error.value("kind", "") + ": " + p.error.value("message", "");
    };
    EXPECT_EQ(kind_of("not json"), "input_invalid: the request is not JSON (one object per line, UTF-8)");
    EXPECT_EQ(kind_of("[1]"), "input_invalid: the request must be a JSON object");
    EXPECT_EQ(kind_of(R"({"op":"list"})"), "input_invalid: the request needs \"v\": 1 (the API version)");
    EXPECT_EQ(kind_of(R"({"v":2,"op":"list"})"),
              "input_invalid: API version 2 is not supported; this agent speaks version 1");
    EXPECT_EQ(kind_of(R"({"v":1})"), "input_invalid: the request needs \"op\" (a string)");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"explode"})").rfind(
                  "input_invalid: unknown op \"explode\" (known: create, call, list, inspect, kill, events", 0),
              0u);
    EXPECT_EQ(kind_of(R"({"v":1,"op":"list","extra":1})"), "input_invalid: unknown field \"extra\" for op list");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"kill"})"), "input_invalid: op kill needs field \"sandbox\" (a string)");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"kill","sandbox":3})"), "input_invalid: field \"sandbox\" must be a string");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"create","policy":"p","command":["a",1]})"),
              "input_invalid: field \"command\" must be a list of strings");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"list","id":{}})"), "input_invalid: id must be an integer or a string");
    EXPECT_EQ(kind_of(std::string(40, '[') + std::string(40, ']')),
              "input_invalid: the request nests deeper than 16 levels");
    EXPECT_EQ(kind_of(R"({"v":1,"op":"list"})", 10),
              "input_too_large: the request is 19 bytes, over the agent's limit of 10");
    EXPECT_EQ(kind_of("{\"v\":1,\"op\":\"list\",\"id\":\"\xff\"}"),
              "input_invalid: the request is not JSON (one object per line, UTF-8)");
}

TEST(AgentProtocol, ErrorKeepsTheIdWhenReadable) {
    auto p = parse_api_request(R"({"v":1,"id":42,"op":"nope"})", 1 << 20);
    EXPECT_EQ(p.id, 42);
    EXPECT_EQ(api_error(p.id, p.error)["id"], 42);
    EXPECT_EQ(api_error(p.id, p.error)["ok"], false);
}

TEST(AgentProtocol, RejectsBadSandboxFields) {
    auto err = [](const std::string& line) -> std::string {
        auto p = parse_api_request(line, 1 << 20);
        if (!p.request) return "parse: " + p.error.value("message", "");
        try {
            sandbox_request(*p.request);
            if (p.request->op == "call") call_request(*p.request);
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::input_invalid);
            return e.what();
        }
        return "";
    };
    std::string base = R"({"v":1,"op":"create","command":["x"],)";
    const std::string not_a_name = "policy must be the name of a policy in the agent's policy directory (no '/', no .yaml)";
    EXPECT_EQ(err(base + R"("policy":"../x"})"), not_a_name);
    // A path by is_policy_path: the agent would read it relative to its working directory.
    EXPECT_EQ(err(base + R"("policy":"x.yaml"})"), not_a_name);
    EXPECT_EQ(err(base + R"("policy":"x.yml"})"), not_a_name);
    EXPECT_EQ(err(base + R"("policy":".hidden"})"), not_a_name);
    EXPECT_EQ(err(base + R"("policy":"ok.name"})"), "");
    EXPECT_EQ(err(R"({"v":1,"op":"create","policy":"p","command":[]})"), "command must name a program");
    EXPECT_EQ(err(base + R"("policy":"p","env":["NAME"]})"),
              "env entries must be NAME=VALUE (the agent's own environment is not passed on): NAME");
    EXPECT_EQ(err(base + R"("policy":"p","limits":{"memory":"lots"}})"),
              "limits.memory must be a size, as \"256Mi\", or bytes");
    EXPECT_EQ(err(base + R"("policy":"p","limits":{"pids":0}})"), "limits.pids must be a whole number from 1 to 4194304");
    EXPECT_EQ(err(base + R"("policy":"p","limits":{"pids":4194305}})"), "limits.pids must be a whole number from 1 to 4194304");
    EXPECT_EQ(err(base + R"("policy":"p","limits":{"disk":1}})"),
              "unknown limit \"disk\" (known: memory, pids, cpu, timeout)");
    EXPECT_EQ(err(base + R"("policy":"p","stdio":"tty"})"),
              "stdio must be \"pass\" (the request carries fds 0, 1, 2), \"return\" (the agent sends them back) or \"null\"");
    EXPECT_EQ(err(R"({"v":1,"op":"call","policy":"p","command":["x"],"method":"tools/delete"})"),
              "method must be tools/call, tools/list, resources/read or prompts/get");
    EXPECT_EQ(err(R"({"v":1,"op":"call","policy":"p","command":["x"],"method":"tools/list","call_timeout":"soon"})"),
              "call_timeout must be a duration, as \"30s\"");
    EXPECT_EQ(err(R"({"v":1,"op":"call","policy":"p","command":["x"],"method":"tools/list","stdio":"pass"})"),
              "parse: unknown field \"stdio\" for op call");
}

TEST(AgentAdmission, CapQueueAndRelease) {
    using C = Admission::Clock;
    Admission a({2, 0, 1, std::chrono::milliseconds(1000)});
    auto t0 = C::now();
    EXPECT_EQ(a.request(1, "p", t0), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(2, "q", t0), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(3, "p", t0), Admission::Verdict::queued);
    EXPECT_EQ(a.position(3), 1u);
    EXPECT_EQ(a.request(4, "p", t0), Admission::Verdict::busy) << "the queue holds 1";
    EXPECT_EQ(a.release("q"), (std::vector<Admission::Ticket>{3}));
    EXPECT_EQ(a.running(), 2u);
    EXPECT_EQ(a.running("p"), 2u);
    EXPECT_EQ(a.queued(), 0u);
}

TEST(AgentAdmission, AdoptedSandboxesTakeSlotsAboveTheCap) {
    using C = Admission::Clock;
    Admission a({1, 0, 4, std::chrono::milliseconds(1000)});
    auto t0 = C::now();
    a.adopt("p");
    a.adopt("p");  // already running: counted, never queued
    EXPECT_EQ(a.running(), 2u);
    EXPECT_EQ(a.queued(), 0u);
    EXPECT_EQ(a.request(3, "p", t0), Admission::Verdict::queued);
    EXPECT_TRUE(a.release("p").empty());  // still one above the cap of 1
    EXPECT_EQ(a.release("p"), std::vector<Admission::Ticket>{3});
    EXPECT_EQ(a.running(), 1u);
}

TEST(AgentAdmission, QueueTimeout) {
    using C = Admission::Clock;
    Admission a({1, 0, 4, std::chrono::milliseconds(1000)});
    auto t0 = C::now();
    EXPECT_EQ(a.request(1, "p", t0), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(2, "p", t0), Admission::Verdict::queued);
    EXPECT_EQ(a.request(3, "p", t0 + std::chrono::milliseconds(500)), Admission::Verdict::queued);
    EXPECT_EQ(*a.next_deadline(), t0 + std::chrono::milliseconds(1000));
    EXPECT_TRUE(a.expire(t0 + std::chrono::milliseconds(999)).empty());
    EXPECT_EQ(a.expire(t0 + std::chrono::milliseconds(1000)), (std::vector<Admission::Ticket>{2}));
    EXPECT_TRUE(a.cancel(3));
    EXPECT_FALSE(a.cancel(3));
    EXPECT_TRUE(a.release("p").empty());
    EXPECT_EQ(a.running(), 0u);
}

TEST(AgentAdmission, PerPolicyCapDoesNotBlockOthers) {
    using C = Admission::Clock;
    Admission a({10, 1, 4, std::chrono::milliseconds(1000)});
    auto t0 = C::now();
    EXPECT_EQ(a.request(1, "p", t0), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(2, "p", t0), Admission::Verdict::queued);
    EXPECT_EQ(a.request(3, "q", t0), Admission::Verdict::admitted) << "q is not behind p's cap";
    EXPECT_TRUE(a.release("q").empty());
    EXPECT_EQ(a.release("p"), (std::vector<Admission::Ticket>{2}));
}

TEST(AgentAdmission, ZeroQueueRefusesAtOnce) {
    Admission a({1, 0, 0, std::chrono::milliseconds(1000)});
    auto t0 = Admission::Clock::now();
    EXPECT_EQ(a.request(1, "p", t0), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(2, "p", t0), Admission::Verdict::busy);
}

TEST(AgentConfig, OnRestartIsAdoptOrKill) {
    EXPECT_EQ(parse_agent_config("# nothing\n", "agent.yaml").on_restart, AgentConfig::OnRestart::adopt);
    EXPECT_EQ(parse_agent_config("on_restart: kill\n", "agent.yaml").on_restart, AgentConfig::OnRestart::kill);
    EXPECT_EQ(parse_agent_config("on_restart: adopt\n", "agent.yaml").on_restart, AgentConfig::OnRestart::adopt);
    EXPECT_NE(config_error("on_restart: keep\n").find("agent.yaml:1:13: on_restart must be adopt or kill"), std::string::npos)
        << config_error("on_restart: keep\n");
}

TEST(AgentProtocol, ReloadAttachDetachFields) {
    EXPECT_TRUE(parse_api_request(R"({"v":1,"id":1,"op":"reload"})", 1 << 20).request);
    EXPECT_TRUE(parse_api_request(R"({"v":1,"id":1,"op":"reload","policy":"github"})", 1 << 20).request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"reload","policy":7})", 1 << 20).request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"attach","policy":"github"})", 1 << 20).request);
    EXPECT_TRUE(parse_api_request(R"({"v":1,"id":1,"op":"attach","cgroup":"/sys/fs/cgroup/x","policy":"github"})", 1 << 20).request);
    // What the OCI hook adds: the attachment's name, the container's id and its pid.
    EXPECT_TRUE(parse_api_request(R"({"v":1,"id":1,"op":"attach","cgroup":"/x","policy":"p","name":"0123456789ab",)"
                                  R"("container":"0123456789abcdef","pid":42})",
                                  1 << 20)
                    .request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"attach","cgroup":"/x","policy":"p","pid":"42"})", 1 << 20).request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"attach","cgroup":"/x","policy":"p","name":7})", 1 << 20).request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"detach"})", 1 << 20).request);
    EXPECT_FALSE(parse_api_request(R"({"v":1,"id":1,"op":"detach","cgroup":"/x","extra":1})", 1 << 20).request);
}

TEST(Attachment, Names) {
    for (const char* ok : {"0123456789ab", "web-1", "a.b_c", "x"}) EXPECT_TRUE(valid_attachment_name(ok)) << ok;
    for (const std::string& bad : {std::string(), std::string(65, 'a'), std::string("s-1-2-3"), std::string("cg-12"),
                                  std::string("a/b"), std::string("a b"), std::string("k8s:pod"), std::string("\n")})
        EXPECT_FALSE(valid_attachment_name(bad)) << bad;
}

// One client's share counts what it runs and what it queued; at the cap it is refused at once
// (never queued), and the share frees with each end, expiry or cancel. Others are not held up.
TEST(AgentAdmission, PerClientShare) {
    using C = Admission::Clock;
    Admission a({4, 0, 8, std::chrono::milliseconds(1000), 2});
    auto t0 = C::now();
    EXPECT_EQ(a.request(1, "p", t0, 1000), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(2, "p", t0, 1000), Admission::Verdict::admitted);
    EXPECT_EQ(a.request(3, "p", t0, 1000), Admission::Verdict::client_busy);
    EXPECT_EQ(a.held_by(1000), 2u);
    EXPECT_EQ(a.request(4, "p", t0, 1001), Admission::Verdict::admitted) << "another client";
    EXPECT_EQ(a.request(5, "p", t0), Admission::Verdict::admitted) << "root has no share";
    EXPECT_EQ(a.request(6, "p", t0, 1001), Admission::Verdict::queued);
    EXPECT_EQ(a.request(7, "p", t0, 1001), Admission::Verdict::client_busy) << "queued counts";
    EXPECT_EQ(a.release("p", 1), (std::vector<Admission::Ticket>{6}));
    EXPECT_EQ(a.held_by(1000), 1u);
    EXPECT_EQ(a.request(8, "p", t0, 1000), Admission::Verdict::queued);
    EXPECT_TRUE(a.cancel(8));
    EXPECT_EQ(a.held_by(1000), 1u);
    a.adopt("p", 9, 1002);
    EXPECT_EQ(a.held_by(1002), 1u);
    a.release("p", 9);
    EXPECT_EQ(a.held_by(1002), 0u);
}

TEST(AgentConfig, FairShareKeys) {
    auto c = parse_agent_config("limits: { max_connections_per_uid: 8, idle_timeout: 2s, max_per_client: 3 }\n", "a.yaml");
    EXPECT_EQ(c.limits.max_connections_per_uid, 8u);
    EXPECT_EQ(c.limits.idle_timeout, std::chrono::milliseconds(2000));
    EXPECT_EQ(c.limits.max_per_client, 3u);
    auto d = parse_agent_config("", "a.yaml");
    EXPECT_EQ(d.limits.max_connections_per_uid, 64u);
    EXPECT_EQ(d.limits.idle_timeout, std::chrono::milliseconds(5000));
    EXPECT_EQ(d.limits.max_per_client, 16u);
    EXPECT_NE(config_error("limits: { max_connections_per_uid: 0 }\n"), "");
    EXPECT_NE(config_error("limits: { idle_timeout: 0s }\n"), "");
}

// A signal beyond an int is refused, not truncated (4294967305 would be 9).
TEST(AgentProtocol, KillSignalRange) {
    auto kill = [](const json& sig) {
        ApiRequest r;
        r.op = "kill";
        r.params = {{"sandbox", "x"}};
        if (!sig.is_null()) r.params["signal"] = sig;
        return kill_signal(r);
    };
    EXPECT_EQ(kill(nullptr), 15);
    EXPECT_EQ(kill(9), 9);
    EXPECT_EQ(kill(64), 64);
    for (const json& bad : {json(0), json(65), json(-9), json(4294967305ull), json(18446744073709551615ull)}) {
        try {
            kill(bad);
            ADD_FAILURE() << bad.dump() << " accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::input_invalid) << bad.dump();
        }
    }
}
