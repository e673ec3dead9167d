// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the MCP proxy's protocol logic (McpSession) fed arbitrary lines from both
// sides, with deadlines expiring and the sandbox ending. Whatever arrives, everything the
// client receives is one valid JSON object per message, everything the server receives is a
// line the client sent or a valid JSON object of ours, and nothing stays pending at the end.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "mcp_session.h"

using namespace mcpwarden;
using nlohmann::json;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    spdlog::set_level(spdlog::level::off);
    McpConfig config;
    config.max_depth = 1 + data[0] % 16;
    config.max_string_bytes = 1 + data[1] % 200;
    config.max_array_length = 1 + data[0] % 7;
    config.max_content_chars = 1 + data[1] % 50;
    config.tools_deny = {"deny*"};
    config.time_every_request = data[0] & 1;
    std::string last_client_line;
    bool forwarded_ok = true;
    McpSession session(config, McpSession::Io{
        [](std::string_view m) {
            json j = json::parse(m, nullptr, false);
            CHECK(j.is_object());
            CHECK(!j.contains("id") || !j["id"].is_null());
        },
        [&](std::string_view m) {
            if (m != last_client_line) forwarded_ok = forwarded_ok && json::parse(m, nullptr, false).is_object();
        },
        [] { return std::uint64_t{0}; }, [] { return std::uint64_t{0}; }});
    auto now = McpSession::Clock::now();
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
    // Lines alternate by their first byte: '>' client, '<' server, '!' time passes.
    while (!input.empty()) {
        auto nl = input.find('\n');
        std::string_view line = input.substr(0, nl);
        input.remove_prefix(nl == std::string_view::npos ? input.size() : nl + 1);
        if (line.empty()) continue;
        char dir = line[0];
        line.remove_prefix(1);
        if (dir == '<') {
            session.server_line(line, now);
        } else if (dir == '!') {
            now += std::chrono::seconds(31);
            session.expire(now);
        } else {
            last_client_line = std::string(line);
            session.client_line(line, now);
        }
        CHECK(forwarded_ok);
    }
    session.fail_pending(ErrorKind::server_exited, "the server exited", json::object(), now);
    CHECK(session.pending() == 0);
    return 0;
}
