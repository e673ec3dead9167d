// SPDX-License-Identifier: Apache-2.0
// The agent's API request parser (agent_protocol.h): any bytes give a checked request or an
// error object, never a crash; a parsed create/call request's fields check without a crash too.
#include <cstdint>
#include <string_view>

#include "agent_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view line(reinterpret_cast<const char*>(data), size);
    auto parsed = mcpwarden::parse_api_request(line, 1u << 20);
    if (!parsed.request) {
        if (!parsed.error.is_object() || !parsed.error.contains("kind")) __builtin_trap();
        return 0;
    }
    const auto& r = *parsed.request;
    try {
        if (r.op == "create" || r.op == "call") {
            auto s = mcpwarden::sandbox_request(r);
            if (s.command.empty()) __builtin_trap();
            if (r.op == "call") (void)mcpwarden::call_request(r);
        }
    } catch (const mcpwarden::Error& e) {
        if (e.kind() != mcpwarden::ErrorKind::input_invalid) __builtin_trap();
    }
    return 0;
}
