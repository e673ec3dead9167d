// SPDX-License-Identifier: Apache-2.0
// The proxy's protocol logic without processes: limits, filters, deadlines, truncation, id
// spaces, late responses and progress, sandbox death.
#include <functional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "egress_extension.h"
#include "mcp_proxy.h"
#include "mcp_session.h"

using namespace mcpwarden;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

class Session : public ::testing::Test {
protected:
    void make(McpConfig c = {}) {
        session = std::make_unique<McpSession>(
            c, McpSession::Io{[this](std::string_view m) { client.emplace_back(m); },
                              [this](std::string_view m) { server.emplace_back(m); }, [this] { return egress; },
                              [this] { return dns; }});
    }
    void SetUp() override { make(); }
    void from_client(const json& j) { session->client_line(j.dump(), now); }
    void from_server(const json& j) { session->server_line(j.dump(), now); }
    json last_client() {
        EXPECT_FALSE(client.empty());
        return client.empty() ? json() : json::parse(client.back());
    }
    static json call(int id, const std::string& tool, json args = json::object()) {
        return {{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", tool}, {"arguments", args}}}};
    }
    static json text_result(int id, const std::string& text) {
        return {{"jsonrpc", "2.0"}, {"id", id}, {"result", {{"content", json::array({{{"type", "text"}, {"text", text}}})}}}};
    }

    std::unique_ptr<McpSession> session;
    std::vector<std::string> client, server;
    std::uint64_t egress = 0, dns = 0;
    McpSession::Clock::time_point now = McpSession::Clock::now();
};

}  // namespace

TEST_F(Session, RequestsPassThroughByteExact) {
    std::string line = R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"é"}}})";
    session->client_line(line, now);
    ASSERT_EQ(server.size(), 1u);
    EXPECT_EQ(server[0], line);
    std::string reply = R"({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"é"}]}})";
    session->server_line(reply, now);
    ASSERT_EQ(client.size(), 1u);
    EXPECT_EQ(client[0], reply);
    EXPECT_EQ(session->pending(), 0u);
}

TEST_F(Session, MalformedJsonGetsParseErrorWithoutId) {
    session->client_line(R"({"jsonrpc":"2.0","id":1,"method":"x",)", now);
    EXPECT_TRUE(server.empty());
    json e = last_client();
    EXPECT_FALSE(e.contains("id"));  // never "id": null
    EXPECT_EQ(e["error"]["code"], -32700);
    EXPECT_EQ(e["error"]["data"]["kind"], "input_invalid");
    session->client_line("\"\xff\"", now);
    EXPECT_EQ(last_client()["error"]["code"], -32700);
    session->client_line("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", now);
    EXPECT_EQ(last_client()["error"]["code"], -32600);
    EXPECT_NE(last_client()["error"]["message"].get<std::string>().find("batch"), std::string::npos);
    session->client_line(R"({"jsonrpc":"2.0","id":null,"method":"ping"})", now);
    EXPECT_EQ(last_client()["error"]["code"], -32600);
    EXPECT_TRUE(server.empty());
}

TEST_F(Session, LimitViolationsNeverReachTheServer) {
    McpConfig c;
    c.max_depth = 5;
    c.max_string_bytes = 10;
    c.max_array_length = 3;
    make(c);
    from_client(call(1, "echo", {{"text", "01234567890"}}));
    json e = last_client();
    EXPECT_EQ(e["id"], 1);
    EXPECT_EQ(e["error"]["code"], mcp_code::input_too_large);
    EXPECT_EQ(e["error"]["data"]["kind"], "input_too_large");
    EXPECT_EQ(e["error"]["data"]["limit_name"], "max_string_bytes");
    EXPECT_EQ(e["error"]["data"]["limit"], 10);
    EXPECT_EQ(e["error"]["data"]["observed"], 11);

    from_client(call(2, "echo", {{"a", {{"b", {{"c", {{"d", 1}}}}}}}}));
    EXPECT_EQ(last_client()["id"], 2);
    EXPECT_EQ(last_client()["error"]["data"]["limit_name"], "max_depth");
    EXPECT_EQ(last_client()["error"]["data"]["observed"], 6);

    from_client(call(3, "echo", {{"a", {1, 2, 3, 4}}}));
    EXPECT_EQ(last_client()["error"]["data"]["limit_name"], "max_array_length");
    // The id comes after the violation (as the TypeScript SDK orders members): still found.
    session->client_line(R"({"method":"tools/call","params":{"name":"echo","arguments":{"t":"aaaaaaaaaaaaaaaaaaaa"}},"jsonrpc":"2.0","id":"late"})", now);
    EXPECT_EQ(last_client()["id"], "late");
    EXPECT_TRUE(server.empty());
    EXPECT_EQ(session->pending(), 0u);
}

TEST_F(Session, OversizedMessageAnswersWithRecoveredId) {
    LineFramer::Oversized o{5000000, R"({"method":"tools/call","params":{"name":"echo","arguments":{"text":"xxxx)",
                            R"(xxxxx"}},"jsonrpc":"2.0","id":9})"};
    session->client_oversized(o, now);
    json e = last_client();
    EXPECT_EQ(e["id"], 9);
    EXPECT_EQ(e["error"]["data"]["kind"], "input_too_large");
    EXPECT_EQ(e["error"]["data"]["limit_name"], "max_message_bytes");
    EXPECT_EQ(e["error"]["data"]["observed"], 5000000);
    EXPECT_TRUE(server.empty());
}

TEST_F(Session, DeniedToolsAreHiddenAndRefused) {
    McpConfig c;
    c.tools_deny = {"delete_*"};
    make(c);
    from_client({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}});
    from_server({{"jsonrpc", "2.0"},
                 {"id", 1},
                 {"result", {{"tools", {{{"name", "echo"}}, {{"name", "delete_all"}}, {{"name", "add"}}}}, {"nextCursor", "c2"}}}});
    json r = last_client();
    ASSERT_EQ(r["result"]["tools"].size(), 2u);
    EXPECT_EQ(r["result"]["tools"][0]["name"], "echo");
    EXPECT_EQ(r["result"]["tools"][1]["name"], "add");
    EXPECT_EQ(r["result"]["nextCursor"], "c2");
    server.clear();
    from_client(call(2, "delete_all"));
    EXPECT_TRUE(server.empty());
    EXPECT_EQ(last_client()["error"]["code"], mcp_code::tool_denied);
    EXPECT_EQ(last_client()["error"]["data"]["kind"], "tool_denied");
    EXPECT_EQ(last_client()["error"]["data"]["tool"], "delete_all");

    McpConfig allow;
    allow.tools_allow = {"ec*"};
    make(allow);
    from_client(call(3, "add"));
    EXPECT_EQ(last_client()["error"]["data"]["kind"], "tool_denied");
    from_client(call(4, "echo"));
    EXPECT_EQ(server.size(), 1u);
}

TEST_F(Session, CallTimeoutCancelsAndDropsLateResponseAndProgress) {
    McpConfig c;
    c.call_timeout = 1000ms;
    c.tool_timeouts["slow"] = 5000ms;
    make(c);
    json req = call(7, "echo");
    req["params"]["_meta"] = {{"progressToken", "tok"}};
    from_client(req);
    from_client(call(8, "slow"));
    ASSERT_TRUE(session->next_deadline());
    EXPECT_EQ(*session->next_deadline(), now + 1000ms);
    from_server({{"jsonrpc", "2.0"}, {"method", "notifications/progress"}, {"params", {{"progressToken", "tok"}, {"progress", 1}}}});
    EXPECT_EQ(client.size(), 1u);  // progress of a pending request passes
    session->expire(now + 999ms);
    EXPECT_EQ(client.size(), 1u);
    session->expire(now + 1000ms);
    json e = last_client();
    EXPECT_EQ(e["id"], 7);
    EXPECT_EQ(e["error"]["code"], mcp_code::call_timeout);
    EXPECT_EQ(e["error"]["data"]["kind"], "call_timeout");
    EXPECT_EQ(e["error"]["data"]["timeout_ms"], 1000);
    EXPECT_EQ(e["error"]["data"]["tool"], "echo");
    json cancel = json::parse(server.back());
    EXPECT_EQ(cancel["method"], "notifications/cancelled");
    EXPECT_EQ(cancel["params"]["requestId"], 7);
    EXPECT_FALSE(cancel.contains("id"));
    // Late progress and the late response are dropped.
    size_t seen = client.size();
    from_server({{"jsonrpc", "2.0"}, {"method", "notifications/progress"}, {"params", {{"progressToken", "tok"}, {"progress", 2}}}});
    from_server(text_result(7, "too late"));
    EXPECT_EQ(client.size(), seen);
    EXPECT_EQ(session->stats().dropped_late, 1u);
    EXPECT_EQ(session->stats().dropped_progress, 1u);
    // The per-tool override.
    EXPECT_EQ(*session->next_deadline(), now + 5000ms);
    from_server(text_result(8, "done"));
    EXPECT_EQ(last_client()["result"]["content"][0]["text"], "done");
    EXPECT_FALSE(session->next_deadline());
}

TEST_F(Session, OnlyContentMethodsAreTimedByDefault) {
    from_client({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "initialize"}, {"params", json::object()}});
    from_client({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "resources/read"}, {"params", {{"uri", "a://b"}}}});
    from_client({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "prompts/get"}, {"params", {{"name", "p"}}}});
    session->expire(now + 61s);
    ASSERT_EQ(client.size(), 2u);
    EXPECT_EQ(json::parse(client[0])["error"]["data"]["uri"], "a://b");
    EXPECT_EQ(json::parse(client[1])["error"]["data"]["name"], "p");
    EXPECT_EQ(session->pending(), 1u);  // initialize
}

TEST_F(Session, ClientCancellationForgetsTheRequest) {
    from_client(call(5, "echo"));
    from_client({{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}, {"params", {{"requestId", 5}}}});
    EXPECT_EQ(json::parse(server.back())["method"], "notifications/cancelled");
    from_server(text_result(5, "late"));
    EXPECT_TRUE(client.empty());
}

TEST_F(Session, TruncatesTextOnCharacterBoundariesWithMetadata) {
    McpConfig c;
    c.max_content_chars = 5;
    make(c);
    from_client(call(1, "unicode"));
    // "éé€😀a" (5 chars) + "bcd": 8 characters in two blocks, plus an image left alone.
    json result = {{"content",
                    {{{"type", "text"}, {"text", "\xc3\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "a"}},
                     {{"type", "image"}, {"data", "AAAA"}, {"mimeType", "image/png"}},
                     {{"type", "text"}, {"text", "bcd"}}}},
                   {"structuredContent", {{"summary", std::string(50, 's')}}},
                   {"_meta", {{"other", 1}}}};
    from_server({{"jsonrpc", "2.0"}, {"id", 1}, {"result", result}});
    json r = last_client()["result"];
    EXPECT_EQ(r["content"][0]["text"], "\xc3\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "a");
    std::string cut = r["content"][2]["text"];
    EXPECT_EQ(cut.rfind("\n[mcpwarden: output truncated to 5 of 8 characters]", 0), 0u) << cut;
    EXPECT_EQ(r["content"][1]["data"], "AAAA");
    // Structured strings get the same budget, cut without a note (still a string for its
    // outputSchema).
    EXPECT_EQ(r["structuredContent"]["summary"], std::string(5, 's'));
    EXPECT_EQ(r["_meta"]["mcpwarden/structured_truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_structured_chars"], 50);
    EXPECT_EQ(r["_meta"]["other"], 1);
    EXPECT_EQ(r["_meta"]["mcpwarden/truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/max_content_chars"], 5);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_content_chars"], 8);

    // Cut inside multi-byte characters: never splits one.
    from_client(call(2, "unicode"));
    from_server(text_result(2, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"));
    std::string t = last_client()["result"]["content"][0]["text"];
    EXPECT_EQ(t.substr(0, 20), "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80");
    EXPECT_EQ(t[20], '\n');
}

TEST_F(Session, TruncatesResourcesAndPrompts) {
    McpConfig c;
    c.max_content_chars = 3;
    make(c);
    from_client({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "resources/read"}, {"params", {{"uri", "x://y"}}}});
    from_server({{"jsonrpc", "2.0"}, {"id", 1}, {"result", {{"contents", {{{"uri", "x://y"}, {"text", "abcdef"}}, {{"uri", "x://z"}, {"blob", "QUJD"}}}}}}});
    json r = last_client()["result"];
    EXPECT_EQ(r["contents"][0]["text"].get<std::string>().substr(0, 4), "abc\n");
    EXPECT_EQ(r["contents"][1]["blob"], "QUJD");
    EXPECT_EQ(r["_meta"]["mcpwarden/total_content_chars"], 6);
    from_client({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "prompts/get"}, {"params", {{"name", "p"}}}});
    from_server({{"jsonrpc", "2.0"}, {"id", 2}, {"result", {{"messages", {{{"role", "user"}, {"content", {{"type", "text"}, {"text", "hello"}}}}}}}}});
    r = last_client()["result"];
    EXPECT_EQ(r["messages"][0]["content"]["text"].get<std::string>().substr(0, 4), "hel\n");
    EXPECT_EQ(r["_meta"]["mcpwarden/truncated"], true);
    // A short result passes untouched (not even re-serialised).
    from_client(call(3, "echo"));
    std::string raw = R"({"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"ab"}]}})";
    session->server_line(raw, now);
    EXPECT_EQ(client.back(), raw);
}

TEST_F(Session, ServerLinesScannedWhileTheyArriveGiveTheSameResult) {
    McpConfig c;
    c.max_content_chars = 4;
    make(c);
    from_client(call(1, "big"));
    std::string line = text_result(1, "0123456789").dump();
    for (size_t off = 0; off < line.size(); off += 7) session->server_piece(std::string_view(line).substr(off, 7));
    session->server_line(line, now);
    EXPECT_EQ(last_client()["result"]["_meta"]["mcpwarden/truncated"], true);
    // A broken line scanned in pieces is still refused, and the next line starts afresh.
    from_client(call(2, "big"));
    session->server_piece(R"({"jsonrpc":"2.0","id":2,"result":{)");
    session->server_line(R"({"jsonrpc":"2.0","id":2,"result":{)", now);
    EXPECT_EQ(last_client()["error"]["data"]["kind"], "result_invalid");
    from_client(call(3, "echo"));
    session->server_line(text_result(3, "ok").dump(), now);
    EXPECT_EQ(last_client()["result"]["content"][0]["text"], "ok");
}

TEST_F(Session, ResultTooLargeBecomesAnError) {
    from_client(call(4, "big"));
    session->server_oversized({20000000, R"({"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"xxx)", "xxx\"}]}}"}, now);
    json e = last_client();
    EXPECT_EQ(e["id"], 4);
    EXPECT_EQ(e["error"]["code"], mcp_code::result_too_large);
    EXPECT_EQ(e["error"]["data"]["kind"], "result_too_large");
    EXPECT_EQ(e["error"]["data"]["observed"], 20000000);
    EXPECT_EQ(session->pending(), 0u);
}

TEST_F(Session, InvalidServerLinesAreDroppedAndAnswered) {
    from_client(call(6, "malformed"));
    session->server_line(R"({"jsonrpc":"2.0","id":6,"result":{"content":[{"type":"text","text":"cut)", now);
    json e = last_client();
    EXPECT_EQ(e["id"], 6);
    EXPECT_EQ(e["error"]["data"]["kind"], "result_invalid");
    session->server_line("Starting server...", now);
    EXPECT_EQ(client.size(), 1u);
    EXPECT_EQ(session->stats().server_invalid, 2u);
}

TEST_F(Session, UncheckableResultsDoNotBypassThePolicy) {
    McpConfig c;
    c.tools_deny = {"secret"};
    c.max_content_chars = 5;
    make(c);
    from_client({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "tools/list"}});
    // The tool filter reads only the names: the rest passes as the server wrote it.
    session->server_line(R"({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}],"x":1e999}})", now);
    EXPECT_EQ(client.back(), R"({"jsonrpc":"2.0","id":1,"result":{"tools":[],"x":1e999}})");
    from_client(call(2, "big"));
    session->server_line(R"({"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"0123456789"}],"n":-1e400}})", now);
    EXPECT_EQ(last_client()["error"]["data"]["kind"], "result_invalid");
    // A server request with a null id is not forwarded (SDK clients reject it).
    session->server_line(R"({"jsonrpc":"2.0","id":null,"method":"roots/list"})", now);
    EXPECT_EQ(client.size(), 2u);
}

TEST_F(Session, ServerRequestsHaveTheirOwnIdSpace) {
    from_client(call(1, "ask_client"));
    // The server asks the client something, with the same id 1.
    json ask = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", "sampling/createMessage"}, {"params", json::object()}};
    from_server(ask);
    EXPECT_EQ(json::parse(client.back()), ask);
    // The client's answer goes to the server; the client's own request 1 is still pending.
    json answer = {{"jsonrpc", "2.0"}, {"id", 1}, {"result", {{"content", "ok"}}}};
    from_client(answer);
    EXPECT_EQ(json::parse(server.back()), answer);
    EXPECT_EQ(session->pending(), 1u);
    from_server(text_result(1, "client said ok"));
    EXPECT_EQ(last_client()["result"]["content"][0]["text"], "client said ok");
    // Notifications pass both ways.
    from_server({{"jsonrpc", "2.0"}, {"method", "notifications/message"}, {"params", {{"level", "info"}}}});
    EXPECT_EQ(last_client()["method"], "notifications/message");
    from_client({{"jsonrpc", "2.0"}, {"method", "notifications/roots/list_changed"}});
    EXPECT_EQ(json::parse(server.back())["method"], "notifications/roots/list_changed");
}

TEST_F(Session, DuplicatePendingIdIsRefused) {
    from_client(call(1, "a"));
    from_client(call(1, "b"));
    EXPECT_EQ(server.size(), 1u);
    EXPECT_EQ(last_client()["error"]["code"], -32600);
    // "1" and 1 are different ids.
    json s = call(0, "c");
    s["id"] = "1";
    from_client(s);
    EXPECT_EQ(server.size(), 2u);
}

TEST_F(Session, SandboxEndAnswersEveryPendingRequest) {
    from_client(call(1, "alloc"));
    from_client({{"jsonrpc", "2.0"}, {"id", "two"}, {"method", "tools/list"}});
    egress = 3;
    session->fail_pending(ErrorKind::memory_exceeded, "the sandbox reached its memory limit", {{"limit", 1}}, now + 5ms);
    ASSERT_EQ(client.size(), 2u);
    json a = json::parse(client[0]), b = json::parse(client[1]);
    EXPECT_EQ(a["id"], 1);
    EXPECT_EQ(b["id"], "two");
    EXPECT_EQ(a["error"]["code"], mcp_code::memory_exceeded);
    EXPECT_EQ(a["error"]["data"]["kind"], "memory_exceeded");
    EXPECT_EQ(a["error"]["data"]["tool"], "alloc");
    EXPECT_EQ(a["error"]["data"]["egress_denied"], 3);
    EXPECT_EQ(session->pending(), 0u);
}

TEST_F(Session, EgressDenialsDuringACallAreCounted) {
    from_client(call(1, "connect"));
    egress = 2;
    from_server(text_result(1, "connect failed"));
    json r = last_client()["result"];
    EXPECT_EQ(r["_meta"]["mcpwarden/egress_denied"], 2);
    from_client(call(2, "echo"));
    std::string raw = text_result(2, "x").dump();
    session->server_line(raw, now);
    EXPECT_EQ(client.back(), raw);  // none during this one
}

TEST_F(Session, ToolFilterKeepsTheServersBytesAndKeyOrder) {
    McpConfig c;
    c.tools_deny = {"get-env"};
    make(c);
    // An id beyond 2^53, keys in the server's order, its spacing and number forms.
    session->client_line(R"({"jsonrpc":"2.0","id":1152921504606846977,"method":"tools/list"})", now);
    std::string tool_a = R"({"name":"zeta", "inputSchema":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"number","minimum":1.50}}}})";
    std::string tool_b = R"({"description":"d","name":"get-env"})";
    std::string tool_c = R"({"name":"alpha","annotations":{"title":"\u00e9"}})";
    session->server_line(R"({"result":{"tools":[ )" + tool_a + " , " + tool_b + "," + tool_c +
                             R"( ],"nextCursor":"n"},"jsonrpc":"2.0","id":1152921504606846977})",
                         now);
    ASSERT_EQ(client.size(), 1u);
    EXPECT_EQ(client[0], R"({"result":{"tools":[)" + tool_a + "," + tool_c +
                             R"(],"nextCursor":"n"},"jsonrpc":"2.0","id":1152921504606846977})");
    // Nothing filtered: the line itself.
    session->client_line(R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})", now);
    std::string same = R"({"jsonrpc":"2.0","id":2,"result":{"tools":[)" + tool_a + "]}}";
    session->server_line(same, now);
    EXPECT_EQ(client.back(), same);
    // Every tool refused.
    session->client_line(R"({"jsonrpc":"2.0","id":3,"method":"tools/list"})", now);
    session->server_line(R"({"jsonrpc":"2.0","id":3,"result":{"tools":[)" + tool_b + "]}}", now);
    EXPECT_EQ(client.back(), R"({"jsonrpc":"2.0","id":3,"result":{"tools":[]}})");
}

TEST_F(Session, EgressFiguresAreSplicedIntoTheServersMeta) {
    from_client(call(1, "connect"));
    egress = 1;
    session->server_line(R"({"jsonrpc":"2.0","id":1,"result":{"z":1.0,"_meta":{"b":2},"content":[]}})", now);
    EXPECT_EQ(client.back(), R"({"jsonrpc":"2.0","id":1,"result":{"z":1.0,"_meta":{"mcpwarden/egress_denied":1,"b":2},"content":[]}})");
    from_client(call(2, "connect"));
    egress = 3;
    session->server_line(R"({"jsonrpc":"2.0","id":2,"result":{ }})", now);
    EXPECT_EQ(client.back(), R"({"jsonrpc":"2.0","id":2,"result":{"_meta":{"mcpwarden/egress_denied":2} }})");
}

TEST_F(Session, TruncationKeepsKeyOrderAndBoundsStructuredContent) {
    McpConfig c;
    c.max_content_chars = 4;
    make(c);
    from_client(call(1, "read"));
    session->server_line(R"({"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"content":"0123456789","n":[1,"ab"]},)"
                         R"("content":[{"type":"text","text":"0123456789"}],"isError":false}})",
                         now);
    ASSERT_EQ(client.size(), 1u);
    std::string out = client[0];
    // The server's order: structuredContent, content, isError, then mcpwarden's _meta.
    EXPECT_LT(out.find("structuredContent"), out.find("\"content\":["));
    EXPECT_LT(out.find("\"content\":["), out.find("isError"));
    json r = json::parse(out)["result"];
    EXPECT_EQ(r["content"][0]["text"], "0123\n[mcpwarden: output truncated to 4 of 10 characters]");
    // One budget of max_content_chars over the structured strings, in document order, no note.
    EXPECT_EQ(r["structuredContent"]["content"], "0123");
    EXPECT_EQ(r["structuredContent"]["n"], json::array({1, ""}));
    EXPECT_EQ(r["_meta"]["mcpwarden/truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/structured_truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_structured_chars"], 12);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_content_chars"], 10);
}

TEST_F(Session, TruncationBoundsALargeStructuredContentAsDocumented) {
    // As server-filesystem answers a read of a 20,001-character file: the text in content, and
    // again in structuredContent, here spread over strings at several levels (some multibyte).
    McpConfig c;
    c.max_content_chars = 5000;
    make(c);
    std::string e_acute = "\xc3\xa9";
    std::string text(20001, 'a');
    json lines = json::array();
    std::string line;
    for (int i = 0; i < 700; ++i) line += e_acute;
    for (int i = 0; i < 10; ++i) lines.push_back(line);
    json structured = {{"lines", lines}, {"path", "f"}, {"stat", {{"size", 20001}, {"binary", false}}},
                       {"text", std::string(13000, 'b')}};
    from_client(call(1, "read_text_file"));
    from_server({{"jsonrpc", "2.0"}, {"id", 1},
                 {"result", {{"content", json::array({{{"type", "text"}, {"text", text}}})}, {"structuredContent", structured}}}});
    ASSERT_EQ(client.size(), 1u);
    json r = json::parse(client[0])["result"];
    std::function<std::uint64_t(const json&)> chars = [&](const json& v) -> std::uint64_t {
        if (v.is_string()) return utf8_chars(v.get<std::string>());
        std::uint64_t n = 0;
        if (v.is_structured()) for (const auto& child : v) n += chars(child);
        return n;
    };
    ASSERT_EQ(chars(structured), 20001u);
    // The documented bound: at most max_content_chars characters over all its strings, which
    // stay strings; numbers and booleans are left as they are.
    EXPECT_LE(chars(r["structuredContent"]), 5000u);
    ASSERT_EQ(r["structuredContent"]["lines"].size(), 10u);
    for (const auto& l : r["structuredContent"]["lines"]) EXPECT_TRUE(l.is_string());
    // In document order: seven lines whole, the eighth cut on a character boundary.
    EXPECT_EQ(r["structuredContent"]["lines"][6], line);
    EXPECT_EQ(r["structuredContent"]["lines"][7], line.substr(0, 200));
    EXPECT_EQ(r["structuredContent"]["text"], "");
    EXPECT_EQ(r["structuredContent"]["stat"], structured["stat"]);
    EXPECT_EQ(r["_meta"]["mcpwarden/truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/max_content_chars"], 5000);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_content_chars"], 20001);
    EXPECT_EQ(r["_meta"]["mcpwarden/structured_truncated"], true);
    EXPECT_EQ(r["_meta"]["mcpwarden/total_structured_chars"], 20001);
}

TEST_F(Session, ClockStopsWhileTheClientAnswersTheServer) {
    McpConfig c;
    c.call_timeout = 1000ms;
    make(c);
    from_client(call(1, "ask_client"));
    // After 500 ms the server asks the user something (elicitation); the user takes 5 s.
    session->server_line(R"({"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{}})", now + 500ms);
    EXPECT_FALSE(session->next_deadline());
    session->expire(now + 5000ms);
    EXPECT_EQ(client.size(), 1u);  // only the elicitation
    session->client_line(R"({"jsonrpc":"2.0","id":"e1","result":{"action":"accept"}})", now + 5500ms);
    ASSERT_TRUE(session->next_deadline());
    EXPECT_EQ(*session->next_deadline(), now + 6000ms);  // the 500 ms left
    session->expire(now + 5999ms);
    EXPECT_EQ(client.size(), 1u);
    session->expire(now + 6000ms);
    EXPECT_EQ(last_client()["error"]["data"]["kind"], "call_timeout");
    // A server request the server itself cancels restarts the clock too.
    session->client_line(call(2, "ask_client").dump(), now + 6500ms);
    session->server_line(R"({"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{}})", now + 7000ms);
    EXPECT_FALSE(session->next_deadline());
    session->server_line(R"({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}})", now + 9000ms);
    ASSERT_TRUE(session->next_deadline());
    EXPECT_EQ(*session->next_deadline(), now + 9500ms);
}

TEST_F(Session, ACancelledCallCancelsItsRequestsToTheClient) {
    from_client(call(1, "ask_client"));
    from_client(call(2, "other"));
    session->server_line(R"({"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{}})", now);
    client.clear();
    // Request 2 ends: "e1" may still belong to 1.
    from_server(text_result(2, "done"));
    ASSERT_EQ(client.size(), 1u);
    from_client({{"jsonrpc", "2.0"}, {"method", "notifications/cancelled"}, {"params", {{"requestId", 1}}}});
    ASSERT_EQ(client.size(), 2u);
    json n = json::parse(client[1]);
    EXPECT_EQ(n["method"], "notifications/cancelled");
    EXPECT_EQ(n["params"]["requestId"], "e1");
    EXPECT_FALSE(n.contains("id"));
    EXPECT_EQ(session->stats().nested_cancelled, 1u);
    // A server request made when no call was pending is nobody's to cancel.
    session->server_line(R"({"jsonrpc":"2.0","id":"r","method":"roots/list"})", now);
    session->fail_pending(ErrorKind::timeout, "x", json::object(), now);
    EXPECT_EQ(session->stats().nested_cancelled, 1u);
}

TEST_F(Session, DnsRefusalsAreCountedLikeEgressDenials) {
    from_client(call(1, "fetch"));
    dns = 2;
    egress = 1;
    session->server_line(text_result(1, "fetch failed").dump(), now);
    json r = last_client()["result"];
    EXPECT_EQ(r["_meta"]["mcpwarden/dns_refused"], 2);
    EXPECT_EQ(r["_meta"]["mcpwarden/egress_denied"], 1);
}

TEST_F(Session, AHandshakeTheServerWillNotAnswerIsFailedWithWhatWasRefused) {
    from_client({{"jsonrpc", "2.0"}, {"id", "init"}, {"method", "initialize"}, {"params", json::object()}});
    from_client(call(2, "echo"));
    EXPECT_TRUE(session->handshake_pending());
    EXPECT_FALSE(session->server_answered());
    dns = 3;
    // What the egress extension records: a refused name, connections the default deny refused
    // (to a learned name, to bare addresses), and one a deny rule refused.
    auto to = [](const std::string& address, int port, const std::string& protocol) {
        return json{{"address", address}, {"port", port}, {"protocol", protocol},
                    {"family", address.find(':') == std::string::npos ? "ipv4" : "ipv6"}};
    };
    json learned = to("198.51.100.1", 80, "tcp");
    learned["name"] = "api.example.com";
    json local = to("10.0.0.5", 5432, "tcp");
    local["name"] = "db.internal";
    std::vector<Refusal> refused{refused_name("registry.npmjs.org"), denied_connection(learned, MW_RULE_DEFAULT),
                                 denied_connection(to("203.0.113.7", 443, "tcp"), MW_RULE_DEFAULT),
                                 denied_connection(to("2001:db8::1", 8443, "udp"), MW_RULE_DEFAULT),
                                 denied_connection(local, MW_RULE_RESERVED),
                                 denied_connection(to("169.254.169.254", 80, "tcp"), 0)};  // the policy's deny rule 0
    EXPECT_EQ(session->fail_handshake(handshake_refused(refused, 3, 4), now + 3s), 1u);
    json e = last_client();
    EXPECT_EQ(e["id"], "init");
    EXPECT_EQ(e["error"]["code"], mcp_code::egress_refused);
    EXPECT_EQ(e["error"]["data"]["kind"], "egress_denied");
    EXPECT_EQ(e["error"]["data"]["refused"],
              json::array({"registry.npmjs.org", "api.example.com (198.51.100.1:80/tcp)", "203.0.113.7:443/tcp",
                           "2001:db8::1:8443/udp", "db.internal (10.0.0.5:5432/tcp)", "169.254.169.254:80/tcp"}));
    // The rule to add for each, in the policy's keys (an address in a reserved range by its
    // address); none for what a deny rule refused.
    EXPECT_EQ(e["error"]["data"]["rules"],
              json::parse(R"([{"host":"registry.npmjs.org","ports":[443],"protocol":"tcp"},)"
                          R"({"host":"api.example.com","ports":[80],"protocol":"tcp"},)"
                          R"({"cidr":"203.0.113.7/32","ports":[443],"protocol":"tcp"},)"
                          R"({"cidr":"2001:db8::1/128","ports":[8443],"protocol":"udp"},)"
                          R"({"cidr":"10.0.0.5/32","ports":[5432],"protocol":"tcp"}])"));
    EXPECT_EQ(e["error"]["data"]["rule"], "egress.allow");
    std::string message = e["error"]["message"];
    EXPECT_NE(message.find(R"(add to the policy's egress.allow: - {"host":"registry.npmjs.org","ports":[443],"protocol":"tcp"} - )"),
              std::string::npos)
        << message;
    EXPECT_EQ(e["error"]["data"]["dns_refused"], 3);
    EXPECT_EQ(e["error"]["data"]["egress_denied"], 4);
    EXPECT_EQ(e["error"]["data"]["method"], "initialize");
    EXPECT_FALSE(session->handshake_pending());
    EXPECT_EQ(session->pending(), 1u);  // the call is not the handshake's
    // The server's late answer is dropped.
    session->server_line(R"({"jsonrpc":"2.0","id":"init","result":{}})", now + 4s);
    EXPECT_EQ(client.size(), 1u);
}

TEST(McpConfigTest, FromPolicyDefaults) {
    McpLimits l;
    auto c = McpConfig::from_policy(l);
    EXPECT_EQ(c.call_timeout, 60s);
    EXPECT_EQ(c.max_message_bytes, 4u << 20);
    EXPECT_EQ(c.max_depth, 64u);
    EXPECT_EQ(c.max_content_chars, 100000u);
    l.tools_allow = {"*"};
    l.max_depth = 9;
    c = McpConfig::from_policy(l);
    EXPECT_FALSE(c.filters_tools());
    EXPECT_EQ(c.max_depth, 9u);
}

TEST(McpUtf8, CountsAndCuts) {
    EXPECT_EQ(utf8_chars("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), 4u);
    EXPECT_EQ(utf8_prefix_bytes("a\xc3\xa9\xe2\x82\xac", 2), 3u);
    EXPECT_EQ(utf8_prefix_bytes("abc", 10), 3u);
    EXPECT_EQ(utf8_prefix_bytes("abc", 0), 0u);
}
