// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the CIDR, address, port-range and protocol parsers (net.h) that turn
// policy text into what the kernel enforces. An accepted CIDR must be canonical (host bits
// zero, prefix in range, IPv4-mapped IPv6 folded to IPv4) and round-trip through to_string;
// merged port ranges must cover exactly the ports of their inputs.
#include <sys/socket.h>

#include <algorithm>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net.h"

using namespace mcpwarden;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

namespace {

void check_cidr(std::string_view text, bool address_only) {
    std::string why;
    auto c = address_only ? parse_address(text) : parse_cidr(text, &why);
    if (!c) {
        CHECK(address_only || !why.empty());
        return;
    }
    CHECK(text.find('\0') == std::string_view::npos);
    CHECK(c->family == AF_INET || c->family == AF_INET6);
    CHECK(c->prefix >= 0 && c->prefix <= c->bits());
    if (address_only) CHECK(c->prefix == c->bits());
    for (int bit = c->prefix; bit < 128; ++bit) CHECK((c->addr[bit / 8] & (0x80 >> (bit % 8))) == 0);
    if (c->family == AF_INET6) {
        static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        CHECK(!(c->prefix >= 96 && std::equal(mapped, mapped + 12, c->addr.begin())));
    }
    CHECK(c->contains(*c));
    auto again = parse_cidr(c->to_string());
    CHECK(again && *again == *c);
}

void check_ports(std::string_view text) {
    // A comma-separated list, as a policy's ports: [...] gives them.
    std::vector<PortRange> ranges;
    auto covered = std::make_unique<std::bitset<65536>>();
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string_view::npos) comma = text.size();
        std::string why;
        if (auto r = parse_port_range(text.substr(start, comma - start), &why)) {
            CHECK(r->lo >= 1 && r->lo <= r->hi);
            ranges.push_back(*r);
            for (unsigned p = r->lo; p <= r->hi; ++p) covered->set(p);
        } else {
            CHECK(!why.empty());
        }
        start = comma + 1;
    }
    auto merged = normalise_ports(ranges);
    auto result = std::make_unique<std::bitset<65536>>();
    for (size_t i = 0; i < merged.size(); ++i) {
        CHECK(merged[i].lo <= merged[i].hi);
        // Sorted, and neither overlapping nor adjacent (else they would have been merged).
        if (i > 0) CHECK(static_cast<unsigned>(merged[i - 1].hi) + 1 < merged[i].lo);
        for (unsigned p = merged[i].lo; p <= merged[i].hi; ++p) result->set(p);
    }
    CHECK(*covered == *result);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    check_cidr(text, false);
    check_cidr(text, true);
    check_ports(text);
    if (auto p = parse_protocol(text)) CHECK(parse_protocol(to_string(*p)) == p);
    return 0;
}
