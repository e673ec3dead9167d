// SPDX-License-Identifier: Apache-2.0
// A misbehaving MCP stdio server for the tests of `run --mcp` and `call`: what
// server-everything cannot do. Tools: echo, big (n chars), unicode (n multi-byte chars),
// sleep (honours notifications/cancelled), stubborn_sleep (ignores it and answers late anyway,
// with progress), alloc (grows past any memory limit mid-call), stderr_flood (megabytes to
// stderr), malformed (a broken JSON line carrying the request id), ask_client (a server->client
// request reusing the client's id), structured (structuredContent + outputSchema), crash.
// Also resources/read test://text/{n} and prompts/get greet. Flags: --ignore-eof (keep running
// after stdin closes), --ignore-term (ignore SIGTERM), --modern (stateless 2026-07-28 only:
// no initialize; server/discover; requests must carry _meta).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

bool g_modern = false;
std::string g_inbuf;
std::deque<std::string> g_backlog;  // lines read while a tool was busy
bool g_eof = false;
std::uint64_t g_lines = 0, g_bytes = 0;  // what reached this server (see the `received` tool)

void send(const json& msg) {
    std::string s = msg.dump() + "\n";
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(1, s.data() + off, s.size() - off);
        if (n <= 0) return;
        off += static_cast<size_t>(n);
    }
}

// Reads one line, waiting at most timeout_ms (-1 = forever). Empty optional on timeout/EOF.
bool read_line(std::string& line, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        auto nl = g_inbuf.find('\n');
        if (nl != std::string::npos) {
            line = g_inbuf.substr(0, nl);
            g_inbuf.erase(0, nl + 1);
            ++g_lines;
            g_bytes += line.size() + 1;
            return true;
        }
        if (g_eof) return false;
        int wait = -1;
        if (timeout_ms >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return false;
            wait = static_cast<int>(left);
        }
        struct pollfd p = {0, POLLIN, 0};
        int rc = ::poll(&p, 1, wait);
        if (rc == 0) return false;
        if (rc < 0) continue;
        char buf[65536];
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) {
            g_eof = true;
            continue;
        }
        g_inbuf.append(buf, static_cast<size_t>(n));
    }
}

json text_result(const std::string& text) {
    return {{"content", json::array({{{"type", "text"}, {"text", text}}})}};
}

json tool(const std::string& name, json props, json extra = json::object()) {
    json t = {{"name", name},
              {"description", "test tool " + name},
              {"inputSchema", {{"type", "object"}, {"properties", props}}}};
    for (auto& [k, v] : extra.items()) t[k] = v;
    return t;
}

json tools_list() {
    json n = {{"n", {{"type", "integer"}}}};
    json ms = {{"ms", {{"type", "integer"}}}};
    return json::array({
        tool("echo", {{"text", {{"type", "string"}}}}),
        tool("big", n),
        tool("unicode", n),
        tool("sleep", ms),
        tool("stubborn_sleep", ms),
        tool("alloc", {{"mb", {{"type", "integer"}}}}),
        tool("stderr_flood", {{"mb", {{"type", "integer"}}}}),
        tool("malformed", json::object()),
        tool("ask_client", json::object()),
        tool("structured", n,
             {{"outputSchema",
               {{"type", "object"}, {"properties", {{"summary", {{"type", "string"}}}}}, {"required", {"summary"}}}}}),
        tool("delete_everything", json::object()),
        tool("connect", {{"host", {{"type", "string"}}}, {"port", {{"type", "integer"}}}}),
        tool("received", json::object()),
        tool("crash", json::object()),
    });
}

// Waits ms, watching for notifications/cancelled of `id`; other lines are kept for later.
bool interruptible_sleep(int ms, const json& id) {
    auto until = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0) return true;
        std::string line;
        if (!read_line(line, static_cast<int>(left))) {
            if (g_eof) std::this_thread::sleep_until(until);
            continue;
        }
        json m = json::parse(line, nullptr, false);
        if (m.is_object() && m.value("method", "") == "notifications/cancelled" &&
            m["params"].value("requestId", json()) == id) {
            std::fprintf(stderr, "test-server: request %s cancelled\n", id.dump().c_str());
            return false;
        }
        g_backlog.push_back(line);
    }
}

// Returns the result, or null when no response must be sent.
json call_tool(const std::string& name, const json& args, const json& id, const json& meta) {
    if (name == "echo") return text_result(args.value("text", ""));
    if (name == "big") return text_result(std::string(args.value("n", 0), 'x'));
    if (name == "unicode") {
        std::string s;
        const char* pieces[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a"};  // é € 😀 a
        for (int i = 0; i < args.value("n", 0); ++i) s += pieces[i % 4];
        return text_result(s);
    }
    if (name == "sleep") {
        if (!interruptible_sleep(args.value("ms", 0), id)) return nullptr;
        return text_result("slept");
    }
    if (name == "stubborn_sleep") {
        int ms = args.value("ms", 0);
        json token = meta.is_object() ? meta.value("progressToken", json()) : json();
        for (int i = 1; i <= 4; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(ms / 4));
            if (!token.is_null())
                send({{"jsonrpc", "2.0"},
                      {"method", "notifications/progress"},
                      {"params", {{"progressToken", token}, {"progress", i}, {"total", 4}}}});
        }
        return text_result("slept anyway");
    }
    if (name == "alloc") {
        // Grows 8 MiB at a time, touching every page, until told size or killed.
        std::vector<std::vector<char>> blocks;
        int mb = args.value("mb", 0);
        for (int i = 0; i < mb; i += 8) {
            blocks.emplace_back(8u << 20, 1);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return text_result("allocated " + std::to_string(mb) + " MiB");
    }
    if (name == "stderr_flood") {
        std::string chunk(65536, 'e');
        chunk.back() = '\n';
        int mb = args.value("mb", 1);
        for (int i = 0; i < mb * 16; ++i) {
            size_t off = 0;
            while (off < chunk.size()) {
                ssize_t n = ::write(2, chunk.data() + off, chunk.size() - off);
                if (n <= 0) break;
                off += static_cast<size_t>(n);
            }
        }
        return text_result("flooded " + std::to_string(mb) + " MiB");
    }
    if (name == "malformed") {
        std::string s = R"({"jsonrpc":"2.0","id":)" + id.dump() + R"(,"result":{"content":[{"type":"text","text":"cut)" "\n";
        (void)!::write(1, s.data(), s.size());
        return nullptr;
    }
    if (name == "ask_client") {
        // A server->client request with the same id as the client's request: a separate id space.
        send({{"jsonrpc", "2.0"},
              {"id", id},
              {"method", "sampling/createMessage"},
              {"params", {{"messages", json::array({{{"role", "user"}, {"content", {{"type", "text"}, {"text", "hi"}}}}})},
                          {"maxTokens", 10}}}});
        for (;;) {
            std::string line;
            if (!read_line(line, -1)) return nullptr;
            json m = json::parse(line, nullptr, false);
            if (m.is_object() && !m.contains("method") && m.value("id", json()) == id)
                return text_result("client said: " + (m.contains("result") ? m["result"].dump() : m["error"].dump()));
            g_backlog.push_back(line);
        }
    }
    if (name == "structured") {
        std::string text(args.value("n", 10), 's');
        return {{"content", json::array({{{"type", "text"}, {"text", text}}})},
                {"structuredContent", {{"summary", "short"}}}};
    }
    if (name == "delete_everything") return text_result("deleted (not really)");
    if (name == "connect") {
        struct sockaddr_in sa {};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(args.value("port", 80)));
        ::inet_pton(AF_INET, args.value("host", "203.0.113.1").c_str(), &sa.sin_addr);
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        std::string what = rc == 0 || errno == EINPROGRESS ? "connecting" : std::string("connect failed: ") + std::strerror(errno);
        ::close(fd);
        return text_result(what);
    }
    if (name == "received") return text_result(json{{"lines", g_lines}, {"bytes", g_bytes}}.dump());
    if (name == "crash") {
        std::fprintf(stderr, "test-server: crashing on purpose\n");
        ::abort();
    }
    return {{"content", json::array({{{"type", "text"}, {"text", "unknown tool " + name}}})}, {"isError", true}};
}

void handle(const std::string& line) {
    json msg = json::parse(line, nullptr, false);
    if (!msg.is_object() || !msg.contains("id") || !msg.contains("method")) return;
    std::string method = msg.value("method", "");
    json id = msg["id"];
    json params = msg.value("params", json::object());
    json meta = params.value("_meta", json::object());
    json reply = {{"jsonrpc", "2.0"}, {"id", id}};
    if (g_modern && method != "server/discover" && !meta.contains("io.modelcontextprotocol/protocolVersion")) {
        reply["error"] = {{"code", method == "initialize" ? -32022 : -32602},
                          {"message", method == "initialize" ? "Unsupported protocol version" : "missing the required _meta envelope"},
                          {"data", {{"supported", {"2026-07-28"}}}}};
        send(reply);
        return;
    }
    if (method == "initialize") {
        reply["result"] = {{"protocolVersion", params.value("protocolVersion", "2025-06-18")},
                           {"capabilities", {{"tools", json::object()}, {"resources", json::object()}, {"prompts", json::object()}}},
                           {"serverInfo", {{"name", "mcpwarden-test-server"}, {"version", "0.1.0"}}}};
    } else if (method == "server/discover") {
        if (!g_modern) {
            reply["error"] = {{"code", -32601}, {"message", "Method not found"}};
        } else {
            reply["result"] = {{"supportedVersions", {"2026-07-28"}},
                               {"capabilities", {{"tools", json::object()}}},
                               {"resultType", "complete"}};
        }
    } else if (method == "ping") {
        reply["result"] = json::object();
    } else if (method == "tools/list") {
        reply["result"] = {{"tools", tools_list()}};
    } else if (method == "tools/call") {
        json r = call_tool(params.value("name", ""), params.value("arguments", json::object()), id, meta);
        if (r.is_null()) return;
        reply["result"] = r;
    } else if (method == "resources/read") {
        std::string uri = params.value("uri", "");
        if (uri.rfind("test://text/", 0) == 0) {
            std::string text(std::stoul(uri.substr(12)), 'r');
            reply["result"] = {{"contents", json::array({{{"uri", uri}, {"mimeType", "text/plain"}, {"text", text}}})}};
        } else {
            reply["error"] = {{"code", -32002}, {"message", "Resource not found"}, {"data", {{"uri", uri}}}};
        }
    } else if (method == "prompts/get") {
        json args = params.value("arguments", json::object());
        std::string text = "Hello " + args.value("name", std::string("world"));
        if (args.contains("pad")) text += std::string(std::stoul(args["pad"].get<std::string>()), '.');
        reply["result"] = {{"description", "greeting"},
                           {"messages", json::array({{{"role", "user"}, {"content", {{"type", "text"}, {"text", text}}}}})}};
    } else {
        reply["error"] = {{"code", -32601}, {"message", "Method not found: " + method}};
    }
    send(reply);
}

}  // namespace

int main(int argc, char** argv) {
    bool ignore_eof = false;
    std::string resolve_first;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--ignore-eof") ignore_eof = true;
        else if (a == "--ignore-term") ::signal(SIGTERM, SIG_IGN);
        else if (a == "--modern") g_modern = true;
        else if (a == "--resolve-first" && i + 1 < argc) resolve_first = argv[++i];
    }
    // Like `npx` fetching its package: no answer to anything until the name resolves (a
    // refused name is retried, as npm retries a refused registry).
    while (!resolve_first.empty()) {
        struct addrinfo hints {};
        hints.ai_socktype = SOCK_STREAM;
        struct addrinfo* res = nullptr;
        int rc = ::getaddrinfo(resolve_first.c_str(), "443", &hints, &res);
        if (rc == 0) {
            ::freeaddrinfo(res);
            break;
        }
        std::fprintf(stderr, "test-server: %s: %s; retrying\n", resolve_first.c_str(), ::gai_strerror(rc));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    std::fprintf(stderr, "test-server: ready\n");
    for (;;) {
        std::string line;
        if (!g_backlog.empty()) {
            line = g_backlog.front();
            g_backlog.pop_front();
        } else if (!read_line(line, -1)) {
            break;
        }
        handle(line);
    }
    std::fprintf(stderr, "test-server: stdin closed\n");
    if (ignore_eof) {
        for (;;) ::pause();
    }
    return 0;
}
