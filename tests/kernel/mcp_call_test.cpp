// SPDX-License-Identifier: Apache-2.0
// `mcpwarden call` end to end: each method, each structured error and its exit code, the
// stateless-protocol handshake, the shutdown waits; nothing left behind.
#include <signal.h>

#include <chrono>

#include "mcp_common.h"

using namespace harness;
using namespace mcptest;
using namespace std::chrono_literals;

namespace {

class McpCall : public KernelTest {
protected:
    // Runs `mcpwarden call FLAGS -- mcp_test_server SERVER_ARGS`; stdout must be one JSON object.
    Result call(const std::vector<std::string>& flags, const std::vector<std::string>& server_args = {}) {
        std::vector<std::string> args{"call", "--state-dir", state_dir()};
        args.insert(args.end(), flags.begin(), flags.end());
        args.push_back("--");
        args.push_back(program("mcp_test_server"));
        args.insert(args.end(), server_args.begin(), server_args.end());
        Result r = warden(args);
        EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out.substr(0, 300);
        out = json::parse(r.out, nullptr, false);
        EXPECT_TRUE(out.is_object()) << r.out.substr(0, 300) << r.err;
        return r;
    }
    json out;
};

}  // namespace

TEST_F(McpCall, ToolsCall) {
    auto base = start_cost();
    auto r = call({"--tool", "echo", "--args", R"({"text":"hello"})"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["content"][0]["text"], "hello");
    EXPECT_LT(r.elapsed, base + 1500ms) << "start cost " << base.count() << " ms";  // the server exits on stdin EOF: no shutdown wait
}

TEST_F(McpCall, ToolsList) {
    auto r = call({"--method", "tools/list"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_GT(out["tools"].size(), 5u);
}

TEST_F(McpCall, ResourcesRead) {
    auto r = call({"--uri", "test://text/12"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["contents"][0]["text"], std::string(12, 'r'));
}

TEST_F(McpCall, PromptsGet) {
    auto r = call({"--prompt", "greet", "--args", R"({"name":"Ada"})"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["messages"][0]["content"]["text"], "Hello Ada");
}

TEST_F(McpCall, StatelessProtocolServer) {
    // A 2026-07-28-only server refuses initialize: call asks server/discover and sends _meta.
    auto r = call({"--tool", "echo", "--args", R"({"text":"modern"})"}, {"--modern"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["content"][0]["text"], "modern");
}

TEST_F(McpCall, ToolErrorAndServerError) {
    auto tool_error = call({"--tool", "no_such_tool"});
    EXPECT_EQ(tool_error.exit_code, 1);
    EXPECT_EQ(out["isError"], true);
    auto server_error = call({"--uri", "missing://x"});
    EXPECT_EQ(server_error.exit_code, 2);
    EXPECT_EQ(out["error"]["kind"], "server_error");
    EXPECT_EQ(out["error"]["code"], -32002);
}

TEST_F(McpCall, TruncationMetadata) {
    std::string p = policy_file("call-trunc", "name: call-trunc\nmcp: { max_content_chars: 100 }\n");
    auto r = call({"--policy", p, "--tool", "big", "--args", R"({"n":5000})"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["_meta"]["mcpwarden/truncated"], true);
    EXPECT_EQ(out["_meta"]["mcpwarden/max_content_chars"], 100);
    EXPECT_EQ(out["_meta"]["mcpwarden/total_content_chars"], 5000);
    EXPECT_EQ(out["content"][0]["text"].get<std::string>().substr(0, 101), std::string(100, 'x') + "\n");
}

TEST_F(McpCall, CallTimeout) {
    auto base = start_cost();
    auto r = call({"--tool", "sleep", "--args", R"({"ms":10000})", "--call-timeout", "300ms"});
    EXPECT_EQ(r.exit_code, 122);
    EXPECT_EQ(out["error"]["kind"], "call_timeout");
    EXPECT_EQ(out["error"]["timeout_ms"], 300);
    EXPECT_EQ(out["error"]["tool"], "sleep");
    EXPECT_LT(r.elapsed, base + 1500ms) << "start cost " << base.count() << " ms";
}

TEST_F(McpCall, ToolDenied) {
    std::string p = policy_file("call-deny", "name: call-deny\nmcp: { tools: { allow: [echo] } }\n");
    auto r = call({"--policy", p, "--tool", "delete_everything"});
    EXPECT_EQ(r.exit_code, 77);
    EXPECT_EQ(out["error"]["kind"], "tool_denied");
    EXPECT_EQ(out["error"]["tool"], "delete_everything");
}

TEST_F(McpCall, InputTooLarge) {
    std::string p = policy_file("call-input", "name: call-input\nmcp: { max_string_bytes: 16 }\n");
    auto r = call({"--policy", p, "--tool", "echo", "--args", R"({"text":"this is longer than sixteen bytes"})"});
    EXPECT_EQ(r.exit_code, 65);
    EXPECT_EQ(out["error"]["kind"], "input_too_large");
    EXPECT_EQ(out["error"]["limit_name"], "max_string_bytes");
    EXPECT_EQ(out["error"]["limit"], 16);
    EXPECT_EQ(out["error"]["observed"], 33);
}

TEST_F(McpCall, ResultTooLarge) {
    std::string p = policy_file("call-result", "name: call-result\nmcp: { max_result_bytes: 64Ki }\n");
    auto r = call({"--policy", p, "--tool", "big", "--args", R"({"n":200000})"});
    EXPECT_EQ(r.exit_code, 123);
    EXPECT_EQ(out["error"]["kind"], "result_too_large");
    EXPECT_EQ(out["error"]["limit"], 65536);
}

TEST_F(McpCall, ResultInvalid) {
    auto r = call({"--tool", "malformed"});
    EXPECT_EQ(r.exit_code, 76);
    EXPECT_EQ(out["error"]["kind"], "result_invalid");
}

TEST_F(McpCall, ServerExited) {
    auto r = call({"--tool", "crash"});
    EXPECT_EQ(r.exit_code, 69);
    EXPECT_EQ(out["error"]["kind"], "server_exited");
    EXPECT_EQ(out["error"]["signal"], SIGABRT);
}

TEST_F(McpCall, MemoryExceeded) {
    auto r = call({"--memory", "64M", "--tool", "alloc", "--args", R"({"mb":1024})"});
    EXPECT_EQ(r.exit_code, 120);
    EXPECT_EQ(out["error"]["kind"], "memory_exceeded");
    EXPECT_EQ(out["error"]["limit"], 64 << 20);
}

TEST_F(McpCall, SandboxTimeout) {
    auto r = call({"--timeout", "1s", "--tool", "sleep", "--args", R"({"ms":10000})"});
    EXPECT_EQ(r.exit_code, 124);
    EXPECT_EQ(out["error"]["kind"], "timeout");
}

TEST_F(McpCall, RefusalsAreJsonToo) {
    std::string bad = policy_file("call-bad", "name: call-bad\nmcp: { max_depth: lots }\n");
    auto r = call({"--policy", bad, "--tool", "echo"});
    EXPECT_EQ(r.exit_code, 78);
    EXPECT_EQ(out["error"]["kind"], "policy_invalid");
    auto u = call({"--args", "{}"});
    EXPECT_EQ(u.exit_code, 64);
    EXPECT_EQ(out["error"]["kind"], "usage");
}

TEST_F(McpCall, StubbornServerIsEndedAfterTheDocumentedWaits) {
    // Answers, then ignores stdin EOF and SIGTERM: 2 s + 2 s, then the sandbox is killed.
    auto base = start_cost();
    auto r = call({"--tool", "echo", "--args", R"({"text":"bye"})"}, {"--ignore-eof", "--ignore-term"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(out["content"][0]["text"], "bye");
    EXPECT_GE(r.elapsed, 3900ms);
    EXPECT_LT(r.elapsed, base + 5500ms) << "start cost " << base.count() << " ms";
}
