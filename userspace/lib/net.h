// SPDX-License-Identifier: Apache-2.0
// Addresses, CIDRs, port ranges and protocols as policies name them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpwarden {

enum class Protocol : std::uint8_t { any = 0, tcp = 6, udp = 17 };

std::string_view to_string(Protocol p);
std::optional<Protocol> parse_protocol(std::string_view text);

// An IPv4 or IPv6 network. IPv4-mapped IPv6 networks (::ffff:a.b.c.d/96+n) are normalised to
// IPv4, as the kernel programs normalise addresses before every decision.
struct Cidr {
    int family = 0;                     // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> addr{};  // network byte order; IPv4 uses the first 4 bytes
    int prefix = 0;

    int bits() const;  // 32 or 128
    bool contains(const Cidr& other) const;  // other is equal to or inside this network
    std::string to_string() const;
    bool operator==(const Cidr&) const = default;
};

// "10.0.0.0/8", "192.0.2.1" (a /32), "2001:db8::/32", "::1". Host bits must be zero.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* why = nullptr);

// A single address (no prefix), normalised like parse_cidr. Used by "policy explain".
std::optional<Cidr> parse_address(std::string_view text);

struct PortRange {
    std::uint16_t lo = 0;
    std::uint16_t hi = 0;
    bool operator==(const PortRange&) const = default;
};

// "443", "8000-8080". Port 0 is not a port.
std::optional<PortRange> parse_port_range(std::string_view text, std::string* why = nullptr);

// Sorted, merged union of ranges.
std::vector<PortRange> normalise_ports(std::vector<PortRange> ranges);

}  // namespace mcpwarden
