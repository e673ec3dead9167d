// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the DNS message parser and the helpers that walk what it returns. Both the
// sandbox (queries) and upstream servers (answers) feed it untrusted bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dns_message.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::span<const std::uint8_t> wire(data, size);
    auto m = mcpwarden::parse_dns(wire);
    if (m) {
        for (const auto& q : m->questions) (void)mcpwarden::dns_addresses_for(*m, q.name);
    }
    auto reply = mcpwarden::dns_error_reply(wire, 5);
    if (!reply.empty()) (void)mcpwarden::parse_dns(reply);
    return 0;
}
