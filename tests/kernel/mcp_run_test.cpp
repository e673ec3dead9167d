// SPDX-License-Identifier: Apache-2.0
// `mcpwarden run --mcp` with the bundled misbehaving test server, in real sandboxes, as root.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mcp_common.h"

using namespace harness;
using namespace mcptest;
using namespace std::chrono_literals;

namespace {

class McpRun : public KernelTest {
protected:
    // close_stdin false: the client stays connected until the sandbox ends (a test of an end
    // that must come from the server's side, not from the shutdown sequence that EOF starts).
    Result run(const std::vector<std::string>& flags, const std::string& input,
               const std::vector<std::string>& server_args = {}, bool close_stdin = true) {
        std::vector<std::string> args{"run", "--mcp"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.push_back("--");
        args.push_back(program("mcp_test_server"));
        args.insert(args.end(), server_args.begin(), server_args.end());
        Options o;
        o.stdin_data = input;
        o.close_stdin = close_stdin;
        return warden(args, o);
    }
    static std::string text_of(const json& response) {
        return response["result"]["content"][0]["text"].get<std::string>();
    }
};

}  // namespace

TEST_F(McpRun, RelaysAndReportsAndEndsWhenTheClientCloses) {
    auto base = start_cost();
    auto r = run({}, handshake() + request(1, "tools/list") + tool_call(2, "echo", {{"text", "hi é"}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    EXPECT_EQ(response(msgs, 0)["result"]["serverInfo"]["name"], "mcpwarden-test-server");
    EXPECT_GT(response(msgs, 1)["result"]["tools"].size(), 5u);
    EXPECT_EQ(text_of(response(msgs, 2)), "hi é");
    EXPECT_EQ(r.report["status"], "exited");
    EXPECT_EQ(r.report["mcp"]["requests"], 3);
    EXPECT_EQ(r.report["mcp"]["rejected"], 0);
    // The server exits on stdin EOF: no shutdown wait.
    EXPECT_LT(r.elapsed, base + 1500ms) << "start cost " << base.count() << " ms";
    EXPECT_NE(r.err.find("test-server: stdin closed"), std::string::npos) << "server stderr is relayed";
}

TEST_F(McpRun, PolicyMcpSectionTurnsMcpModeOn) {
    std::string p = policy_file("mcp-on", "name: mcp-on\nmcp: {}\n");
    Options o;
    o.stdin_data = "not json\n";
    auto r = warden({"run", "--policy", p, "--", program("mcp_test_server")}, o);
    auto msgs = messages(r.out);
    ASSERT_EQ(msgs.size(), 1u) << r.out;
    EXPECT_EQ(msgs[0]["error"]["code"], -32700);
}

TEST_F(McpRun, MalformedAndOversizedInputNeverReachesTheServer) {
    std::string p = policy_file("limits", R"(name: limits
mcp: { max_message_bytes: 64Ki, max_string_bytes: 1Ki, max_depth: 8, max_array_length: 10 }
)");
    std::string oversized = R"({"method":"tools/call","params":{"name":"echo","arguments":{"text":")" +
                            std::string(200000, 'o') + R"("}},"jsonrpc":"2.0","id":4})" "\n";
    std::string deep = R"({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"a":)" +
                       std::string(20, '[') + std::string(20, ']') + "}}}\n";
    auto r = run({"--policy", p},
                 handshake() + "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"\n" +  // truncated JSON
                     "[" + request(2, "ping").substr(0, request(2, "ping").size() - 1) + "]\n" +  // a batch
                     tool_call(3, "echo", {{"text", std::string(2000, 's')}}) + oversized + "\"\xff\"\n" + deep +
                     tool_call(7, "echo", {{"list", json::array({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})}}) +
                     tool_call(5, "received"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    int parse_errors = 0, invalid_requests = 0;
    for (const auto& m : msgs) {
        if (!m.contains("error") || m.contains("id")) continue;
        if (m["error"]["code"] == -32700) ++parse_errors;
        if (m["error"]["code"] == -32600) ++invalid_requests;
        EXPECT_EQ(m["error"]["data"]["kind"], "input_invalid");
    }
    EXPECT_EQ(parse_errors, 2);  // the truncated JSON and the invalid UTF-8
    EXPECT_EQ(invalid_requests, 1);
    auto e3 = response(msgs, 3)["error"];
    EXPECT_EQ(e3["data"]["kind"], "input_too_large");
    EXPECT_EQ(e3["data"]["limit_name"], "max_string_bytes");
    EXPECT_EQ(e3["data"]["limit"], 1024);
    EXPECT_EQ(e3["data"]["observed"], 2000);
    auto e4 = response(msgs, 4)["error"];  // id recovered from the end of a 200 KB line
    EXPECT_EQ(e4["data"]["kind"], "input_too_large");
    EXPECT_EQ(e4["data"]["limit_name"], "max_message_bytes");
    EXPECT_EQ(e4["data"]["limit"], 65536);
    EXPECT_EQ(e4["data"]["observed"], oversized.size() - 1);
    EXPECT_EQ(response(msgs, 6)["error"]["data"]["limit_name"], "max_depth");
    EXPECT_EQ(response(msgs, 7)["error"]["data"]["limit_name"], "max_array_length");
    // Only the handshake and `received` itself reached the server.
    auto got = json::parse(text_of(response(msgs, 5)));
    EXPECT_EQ(got["lines"], 3) << got;
}

TEST_F(McpRun, DeniedToolsAreHiddenAndRefused) {
    std::string p = policy_file("deny", "name: deny\nmcp:\n  tools: { deny: [\"delete_*\", crash] }\n");
    auto r = run({"--policy", p},
                 handshake() + request(1, "tools/list") + tool_call(2, "delete_everything") + tool_call(3, "received"));
    auto msgs = messages(r.out);
    // A named copy: a range-for over a member of a temporary uses it after it is freed (ASan).
    auto listed = response(msgs, 1);
    for (const auto& t : listed["result"]["tools"]) {
        EXPECT_NE(t["name"], "delete_everything");
        EXPECT_NE(t["name"], "crash");
    }
    auto e = response(msgs, 2)["error"];
    EXPECT_EQ(e["data"]["kind"], "tool_denied");
    EXPECT_EQ(e["data"]["tool"], "delete_everything");
    EXPECT_EQ(json::parse(text_of(response(msgs, 3)))["lines"], 4);  // handshake, tools/list, received
}

TEST_F(McpRun, CallTimeoutCancelsAtTheServerAndDropsLateOutput) {
    std::string p = policy_file("timeouts", R"(name: timeouts
mcp: { call_timeout: 10s, tool_timeouts: { sleep: 300ms, stubborn_sleep: 500ms } }
)");
    Live live({"run", "--mcp", "--policy", p, "--", program("mcp_test_server")});
    live.send(handshake() + tool_call(1, "sleep", {{"ms", 5000}}));
    auto e1 = live.wait_for(1)["error"];
    EXPECT_EQ(e1["code"], -31003);
    EXPECT_EQ(e1["data"]["kind"], "call_timeout");
    EXPECT_EQ(e1["data"]["timeout_ms"], 300);
    EXPECT_EQ(e1["data"]["tool"], "sleep");
    // The stubborn tool ignores notifications/cancelled: its progress after the deadline and
    // its late answer never reach the client.
    live.send(tool_call(2, "stubborn_sleep", {{"ms", 1200}}, {{"progressToken", "p2"}}));
    EXPECT_EQ(live.wait_for(2)["error"]["data"]["kind"], "call_timeout");
    std::this_thread::sleep_for(1s);  // the server finishes it meanwhile
    live.send(tool_call(3, "echo", {{"text", "after"}}));
    EXPECT_EQ(text_of(live.wait_for(3)), "after");
    ASSERT_EQ(live.finish(), 0) << live.err;
    // The cooperative tool saw notifications/cancelled.
    EXPECT_NE(live.err.find("test-server: request 1 cancelled"), std::string::npos) << live.err;
    EXPECT_EQ(live.out.find("slept anyway"), std::string::npos);
    EXPECT_EQ(live.report["mcp"]["dropped_late_responses"], 1);
    EXPECT_GE(live.report["mcp"]["dropped_progress"].get<int>(), 2);
    EXPECT_EQ(live.report["mcp"]["call_timeouts"], 2);
}

TEST_F(McpRun, LargeOutputIsTruncatedWithMetadata) {
    std::string p = policy_file("trunc", "name: trunc\nmcp: { max_content_chars: 1000 }\n");
    auto r = run({"--policy", p},
                 handshake() + tool_call(1, "big", {{"n", 300000}}) + tool_call(2, "unicode", {{"n", 5000}}) +
                     tool_call(3, "structured", {{"n", 5000}}) + tool_call(4, "echo", {{"text", "short"}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    auto r1 = response(msgs, 1)["result"];
    EXPECT_EQ(text_of(response(msgs, 1)).substr(0, 1001), std::string(1000, 'x') + "\n");
    EXPECT_EQ(r1["_meta"]["mcpwarden/truncated"], true);
    EXPECT_EQ(r1["_meta"]["mcpwarden/max_content_chars"], 1000);
    EXPECT_EQ(r1["_meta"]["mcpwarden/total_content_chars"], 300000);
    // Multi-byte text is cut on a character boundary (it parsed, so it is valid UTF-8).
    std::string u = text_of(response(msgs, 2));
    EXPECT_EQ(u.substr(0, u.find('\n')).size(), 250u * (2 + 3 + 4 + 1));
    auto r3 = response(msgs, 3)["result"];
    EXPECT_EQ(r3["structuredContent"]["summary"], "short");
    EXPECT_EQ(r3["_meta"]["mcpwarden/truncated"], true);
    EXPECT_FALSE(response(msgs, 4)["result"].contains("_meta"));
    EXPECT_EQ(r.report["mcp"]["truncated"], 3);
}

TEST_F(McpRun, ResultTooLargeIsReplacedByAnErrorAndFramingRecovers) {
    std::string p = policy_file("result", "name: result\nmcp: { max_result_bytes: 100Ki, max_content_chars: 10000000 }\n");
    auto r = run({"--policy", p}, handshake() + tool_call(1, "big", {{"n", 500000}}) + tool_call(2, "echo", {{"text", "next"}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    auto e = response(msgs, 1)["error"];
    EXPECT_EQ(e["data"]["kind"], "result_too_large");
    EXPECT_EQ(e["data"]["limit"], 102400);
    EXPECT_GT(e["data"]["observed"].get<std::uint64_t>(), 500000u);
    EXPECT_EQ(text_of(response(msgs, 2)), "next");
    EXPECT_LT(r.out.size(), 10000u);
}

TEST_F(McpRun, MemoryLimitMidCallAnswersEveryPendingRequest) {
    // The client stays: under emulation, filling 64 MiB page by page can take longer than the
    // 2 s an EOF gives the server before SIGTERM.
    auto r = run({"--memory", "64M"}, handshake() + tool_call(1, "alloc", {{"mb", 1024}}) + tool_call(2, "echo", {{"text", "queued"}}),
                 {}, false);
    EXPECT_EQ(r.exit_code, 120) << r.err;
    EXPECT_EQ(r.report["status"], "memory_exceeded");
    auto msgs = messages(r.out);
    for (int id : {1, 2}) {
        auto e = response(msgs, id)["error"];
        EXPECT_EQ(e["code"], -31006) << id;
        EXPECT_EQ(e["data"]["kind"], "memory_exceeded") << id;
        EXPECT_EQ(e["data"]["limit"], 64 << 20);
    }
    EXPECT_EQ(response(msgs, 1)["error"]["data"]["tool"], "alloc");
}

TEST_F(McpRun, SandboxTimeoutAndCrashAnswerPendingRequests) {
    auto r = run({"--timeout", "1s"}, handshake() + tool_call(1, "sleep", {{"ms", 10000}}));
    EXPECT_EQ(r.exit_code, 124);
    EXPECT_EQ(response(messages(r.out), 1)["error"]["data"]["kind"], "timeout");
    auto c = run({}, handshake() + tool_call(1, "crash"));
    auto e = response(messages(c.out), 1)["error"];
    EXPECT_EQ(e["data"]["kind"], "server_exited");
    EXPECT_EQ(e["data"]["signal"], SIGABRT);
}

TEST_F(McpRun, MalformedServerOutputIsDroppedAndAnswered) {
    auto r = run({}, handshake() + tool_call(1, "malformed") + tool_call(2, "echo", {{"text", "fine"}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);  // fails if the broken line reached stdout
    EXPECT_EQ(response(msgs, 1)["error"]["data"]["kind"], "result_invalid");
    EXPECT_EQ(text_of(response(msgs, 2)), "fine");
    EXPECT_EQ(r.report["mcp"]["server_invalid_lines"], 1);
}

TEST_F(McpRun, ServerToClientRequestsPassWithTheirOwnIds) {
    // The server asks the client (sampling) with the id of the client's own request, 1.
    json answer = {{"jsonrpc", "2.0"}, {"id", 1}, {"result", {{"role", "assistant"}, {"content", {{"type", "text"}, {"text", "sampled"}}}, {"model", "m"}}}};
    auto r = run({}, handshake() + tool_call(1, "ask_client") + line(answer));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    bool asked = false;
    for (const auto& m : msgs) asked = asked || (m.value("method", "") == "sampling/createMessage" && m["id"] == 1);
    EXPECT_TRUE(asked) << r.out;
    EXPECT_NE(text_of(response(msgs, 1)).find("sampled"), std::string::npos);
}

TEST_F(McpRun, EgressDenialsDuringACallAreCounted) {
    Live live({"run", "--mcp", "--", program("mcp_test_server")});
    live.send(handshake() + tool_call(1, "connect", {{"host", "203.0.113.7"}, {"port", 80}}));
    auto r1 = live.wait_for(1)["result"];
    EXPECT_NE(r1["content"][0]["text"].get<std::string>().find("connect failed"), std::string::npos) << r1;
    EXPECT_GE(r1["_meta"]["mcpwarden/egress_denied"].get<int>(), 1) << r1;
    // A later call without denials carries no count.
    live.send(tool_call(2, "echo", {{"text", "x"}}));
    EXPECT_FALSE(live.wait_for(2)["result"].contains("_meta"));
    EXPECT_EQ(live.finish(), 0) << live.err;
}

TEST_F(McpRun, ChattyStderrNeverBlocksEvenWhenNobodyReadsIt) {
    // mcpwarden's stderr is a pipe nobody reads: 16 MiB of server stderr must not stall MCP.
    int in[2], out[2], err[2];
    ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(err, O_CLOEXEC), 0);
    std::string input = handshake() + tool_call(1, "stderr_flood", {{"mb", 16}}) + tool_call(2, "echo", {{"text", "alive"}});
    std::vector<std::string> argv{MCPWARDEN_BIN, "run", "--mcp", "--state-dir", state_dir(), "--", program("mcp_test_server")};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        std::vector<char*> a;
        for (auto& s : argv) a.push_back(s.data());
        a.push_back(nullptr);
        ::execv(a[0], a.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    ASSERT_EQ(::write(in[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (got.find("alive") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (::poll(&p, 1, 200) > 0) {
            char buf[65536];
            ssize_t n = ::read(out[0], buf, sizeof buf);
            if (n <= 0) break;
            got.append(buf, static_cast<size_t>(n));
        }
    }
    EXPECT_NE(got.find("alive"), std::string::npos) << "MCP stalled behind an unread stderr";
    ::close(in[1]);
    // Now drain stderr so mcpwarden's own last log lines cannot hold it, and reap it.
    char buf[65536];
    while (::read(err[0], buf, sizeof buf) > 0) {
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status)) << status;
    ::close(out[0]);
    ::close(err[0]);
}

TEST_F(McpRun, ShutdownClosesStdinThenSigtermThenKills) {
    // A server that exits on stdin EOF ends at once; one that ignores EOF gets SIGTERM after
    // 2 s; one that also ignores SIGTERM is killed 2 s later.
    auto base = start_cost();
    auto polite = run({}, handshake());
    EXPECT_EQ(polite.report["status"], "exited");
    EXPECT_LT(polite.elapsed, base + 1500ms) << "start cost " << base.count() << " ms";

    auto deaf = run({}, handshake(), {"--ignore-eof"});
    EXPECT_EQ(deaf.exit_code, 0) << "the shutdown sequence is the expected end";
    EXPECT_EQ(deaf.report["status"], "signaled");
    EXPECT_EQ(deaf.report["signal"], SIGTERM);
    EXPECT_GE(deaf.elapsed, 1900ms);
    EXPECT_LT(deaf.elapsed, base + 3500ms);

    auto stubborn = run({}, handshake(), {"--ignore-eof", "--ignore-term"});
    EXPECT_EQ(stubborn.report["status"], "signaled");
    EXPECT_EQ(stubborn.report["signal"], SIGKILL);
    EXPECT_GE(stubborn.elapsed, 3900ms);
    EXPECT_LT(stubborn.elapsed, base + 5500ms);
}

TEST_F(McpRun, CommandLinesAsClientsWriteThem) {
    // mcpwarden's options end at the command: what follows is the command's, flags included.
    std::string policy = policy_file("argv", "name: argv\n");
    std::vector<std::string> print = {"/bin/sh", "-c", "printf '[%s]' \"$@\"", "sh"};
    auto with = [&](std::vector<std::string> head, std::vector<std::string> tail) {
        head.insert(head.end(), print.begin(), print.end());
        head.insert(head.end(), tail.begin(), tail.end());
        return head;
    };
    auto r = warden(with({"run", "--policy", policy}, {"-y", "x"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "[-y][x]");
    r = warden(with({"run", "--policy", policy, "--"}, {"--help"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "[--help]");
    r = warden(with({"run", "--policy=" + policy}, {"--help"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "[--help]");
    // Options with values before the command, mcpwarden's own names after it.
    r = warden(with({"--log-level", "error", "run", "--state-dir", state_dir(), "--timeout", "30s", "--env", "A=1", "--policy", policy},
                    {"--policy", "other", "--timeout=1s", "-h"}));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "[--policy][other][--timeout=1s][-h]");
    // `call` the same way: the server gets its own flags.
    r = warden({"call", "--state-dir", state_dir(), "--policy", policy, "--method", "tools/list", program("mcp_test_server"),
               "--ignore-term"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("\"tools\""), std::string::npos) << r.out;
    // mcpwarden's own --help still works where no command was given.
    r = warden({"run", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Run CMD in a fresh sandbox"), std::string::npos);
}

TEST_F(McpRun, RequestIdsBeyondDoublePrecisionComeBackExactly) {
    std::string policy = policy_file("bigid", "name: bigid\nmcp:\n  tools: { deny: [\"delete_*\"] }\n");
    std::string input = handshake() + R"({"jsonrpc":"2.0","id":1152921504606846977,"method":"tools/list"})" "\n" +
                        R"({"jsonrpc":"2.0","id":9007199254740993,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}})" "\n";
    auto r = run({"--policy", policy}, input);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // Filtered (the tool list is edited) and passed through: both ids exactly as sent.
    EXPECT_NE(r.out.find(R"("id":1152921504606846977,)"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("delete_everything"), std::string::npos);
    EXPECT_NE(r.out.find(R"("id":9007199254740993,)"), std::string::npos) << r.out;
}

TEST_F(McpRun, RefusedNameBeforeTheHandshakeFailsFastAndSaysWhy) {
    // A server that retries a name the policy does not allow (as npx retries its registry)
    // and answers nothing meanwhile: its initialize gets an error naming it within seconds.
    Live live({"run", "--mcp", "--", program("mcp_test_server"), "--resolve-first", "registry.npmjs.org"});
    live.send(handshake());
    auto started = std::chrono::steady_clock::now();
    json e = live.wait_for(0, 30s);
    auto took = std::chrono::steady_clock::now() - started;
    ASSERT_TRUE(e.contains("error")) << e << live.err;
    EXPECT_LT(took, 15s);  // the grace is 3 s; the VM is slow
    EXPECT_EQ(e["error"]["code"], -31010);
    EXPECT_EQ(e["error"]["data"]["kind"], "egress_denied");
    EXPECT_EQ(e["error"]["data"]["method"], "initialize");
    EXPECT_GE(e["error"]["data"]["dns_refused"].get<int>(), 1) << e;
    EXPECT_NE(e["error"]["message"].get<std::string>().find("registry.npmjs.org"), std::string::npos) << e;
    EXPECT_EQ(e["error"]["data"]["refused"][0], "registry.npmjs.org");
    // The rule to add, as the policy writes it.
    EXPECT_EQ(e["error"]["data"]["rules"][0], json::parse(R"({"host":"registry.npmjs.org","ports":[443],"protocol":"tcp"})")) << e;
    EXPECT_NE(e["error"]["message"].get<std::string>().find(R"(egress.allow: - {"host":"registry.npmjs.org",)"), std::string::npos) << e;
    // One human line on stderr.
    EXPECT_NE(live.err.find("the policy refused: registry.npmjs.org"), std::string::npos) << live.err;
    live.finish();
}

TEST_F(McpRun, ClientSigtermDuringTheShutdownSequenceIsANormalEnd) {
    // The SDKs close stdin, then SIGTERM mcpwarden 2 s later when the server has not exited.
    Live live({"--log-level", "debug", "run", "--mcp", "--", program("mcp_test_server"), "--ignore-eof"});
    live.send(handshake());
    ASSERT_FALSE(live.wait_for(0).is_null());
    live.close_stdin();
    ASSERT_TRUE(live.wait_for_err("closing the server's stdin")) << live.err;
    live.signal(SIGTERM);
    EXPECT_EQ(live.finish(), 0) << live.err;
    EXPECT_EQ(live.err.find("sandbox ended: interrupted"), std::string::npos) << live.err;
    EXPECT_NE(live.err.find("sandbox ended by the MCP shutdown sequence"), std::string::npos) << live.err;
}
