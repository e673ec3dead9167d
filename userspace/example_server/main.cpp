// SPDX-License-Identifier: Apache-2.0
// A small MCP stdio server bundled with mcpwarden for the quick start, the demo and tests.
// Newline-delimited JSON-RPC 2.0 on stdin/stdout, diagnostics on stderr. Its tools exercise
// what the sandbox enforces: network egress, time, memory, processes and output size.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "version.h"

using nlohmann::json;

namespace {

json tool(const std::string& name, const std::string& description, json properties,
          std::vector<std::string> required) {
    return {{"name", name},
            {"description", description},
            {"inputSchema", {{"type", "object"}, {"properties", properties}, {"required", required}}}};
}

json tools_list() {
    return json::array({
        tool("echo", "Returns its text argument.", {{"text", {{"type", "string"}}}}, {"text"}),
        tool("add", "Adds two numbers.", {{"a", {{"type", "number"}}}, {"b", {{"type", "number"}}}}, {"a", "b"}),
        tool("connect", "Opens a TCP connection to host:port and reports whether it succeeded.",
             {{"host", {{"type", "string"}}}, {"port", {{"type", "integer"}}}}, {"host", "port"}),
        tool("whoami", "Reports the uid, gid, cgroup and HOME the server runs with.", json::object(), {}),
        tool("sleep", "Sleeps for ms milliseconds.", {{"ms", {{"type", "integer"}}}}, {"ms"}),
        tool("big", "Returns a text of n characters.", {{"n", {{"type", "integer"}}}}, {"n"}),
        tool("alloc", "Allocates and touches mb MiB of memory.", {{"mb", {{"type", "integer"}}}}, {"mb"}),
    });
}

json text_result(const std::string& text, bool is_error = false) {
    json r = {{"content", json::array({{{"type", "text"}, {"text", text}}})}};
    if (is_error) r["isError"] = true;
    return r;
}

std::string try_connect(const std::string& host, int port) {
    struct addrinfo hints {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) return std::string("resolve failed: ") + gai_strerror(rc);
    std::string out = "no address";
    for (auto* ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            out = std::string("socket failed: ") + strerror(errno);
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            close(fd);
            out = "connected";
            break;
        }
        out = std::string("connect failed: ") + strerror(errno);
        close(fd);
    }
    freeaddrinfo(res);
    return out;
}

std::string read_small(const char* path) {
    FILE* f = fopen(path, "r");
    if (!f) return "";
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    std::string s(buf);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

json call_tool(const std::string& name, const json& args) {
    if (name == "echo") return text_result(args.value("text", ""));
    if (name == "add") {
        double sum = args.value("a", 0.0) + args.value("b", 0.0);
        return text_result(json(sum).dump());
    }
    if (name == "connect") return text_result(try_connect(args.value("host", ""), args.value("port", 0)));
    if (name == "whoami") {
        const char* home = getenv("HOME");
        json j = {{"uid", getuid()}, {"gid", getgid()}, {"cgroup", read_small("/proc/self/cgroup")},
                  {"home", home ? home : ""}};
        return text_result(j.dump());
    }
    if (name == "sleep") {
        std::this_thread::sleep_for(std::chrono::milliseconds(args.value("ms", 0)));
        return text_result("slept");
    }
    if (name == "big") return text_result(std::string(args.value("n", 0), 'x'));
    if (name == "alloc") {
        size_t bytes = static_cast<size_t>(args.value("mb", 0)) << 20;
        std::vector<char> block(bytes, 1);
        return text_result("allocated " + std::to_string(block.size() >> 20) + " MiB");
    }
    return text_result("unknown tool " + name, true);
}

void send(const json& msg) {
    std::cout << msg.dump() << "\n" << std::flush;
}

}  // namespace

int main() {
    std::string line;
    while (std::getline(std::cin, line)) {
        if (line.empty()) continue;
        json msg;
        try {
            msg = json::parse(line);
        } catch (const json::exception&) {
            send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32700}, {"message", "Parse error"}}}});
            continue;
        }
        if (!msg.contains("id") || !msg.contains("method")) continue;  // notifications, responses
        const std::string method = msg.value("method", "");
        json id = msg["id"];
        json params = msg.value("params", json::object());
        json reply = {{"jsonrpc", "2.0"}, {"id", id}};
        if (method == "initialize") {
            std::string version = params.value("protocolVersion", "2025-06-18");
            reply["result"] = {{"protocolVersion", version},
                               {"capabilities", {{"tools", json::object()}}},
                               {"serverInfo", {{"name", "mcpwarden-example-server"}, {"version", MCPWARDEN_VERSION}}}};
        } else if (method == "ping") {
            reply["result"] = json::object();
        } else if (method == "tools/list") {
            reply["result"] = {{"tools", tools_list()}};
        } else if (method == "tools/call") {
            reply["result"] = call_tool(params.value("name", ""), params.value("arguments", json::object()));
        } else {
            reply["error"] = {{"code", -32601}, {"message", "Method not found: " + method}};
        }
        send(reply);
    }
    return 0;
}
