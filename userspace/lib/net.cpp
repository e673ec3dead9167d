// SPDX-License-Identifier: Apache-2.0
#include "net.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace mcpwarden {

std::string_view to_string(Protocol p) {
    switch (p) {
        case Protocol::tcp: return "tcp";
        case Protocol::udp: return "udp";
        case Protocol::any: return "any";
    }
    return "any";
}

std::optional<Protocol> parse_protocol(std::string_view text) {
    if (text == "tcp") return Protocol::tcp;
    if (text == "udp") return Protocol::udp;
    if (text == "any" || text == "*") return Protocol::any;
    return std::nullopt;
}

int Cidr::bits() const { return family == AF_INET ? 32 : 128; }

bool Cidr::contains(const Cidr& o) const {
    if (family != o.family || o.prefix < prefix) return false;
    int full = prefix / 8, rest = prefix % 8;
    if (std::memcmp(addr.data(), o.addr.data(), full) != 0) return false;
    if (rest == 0) return true;
    std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (addr[full] & mask) == (o.addr[full] & mask);
}

std::string Cidr::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(family, addr.data(), buf, sizeof buf);
    std::string out = buf;
    // Appends, not "/" + std::to_string(): GCC 12 at -O3 warns -Wrestrict on the latter (PR 105329).
    if (prefix != bits()) {
        out += '/';
        out += std::to_string(prefix);
    }
    return out;
}

namespace {

void set_why(std::string* why, std::string text) {
    if (why) *why = std::move(text);
}

bool is_v4_mapped(const std::uint8_t* a) {
    static const std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a, prefix, 12) == 0;
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
    // inet_pton reads a C string: "10.0.0.1\0junk" would pass as 10.0.0.1 (found by fuzzing).
    if (text.find('\0') != std::string_view::npos) {
        set_why(why, "an address may not contain a NUL character");
        return std::nullopt;
    }
    std::string s(text);
    std::string addr_part = s;
    std::optional<int> prefix;
    if (auto slash = s.find('/'); slash != std::string::npos) {
        addr_part = s.substr(0, slash);
        std::string_view p = std::string_view(s).substr(slash + 1);
        int value = -1;
        auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
        if (ec != std::errc() || ptr != p.data() + p.size() || p.empty()) {
            set_why(why, "prefix length '" + std::string(p) + "' is not a number");
            return std::nullopt;
        }
        prefix = value;
    }
    Cidr c;
    if (inet_pton(AF_INET, addr_part.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET;
    } else if (inet_pton(AF_INET6, addr_part.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET6;
    } else {
        set_why(why, "'" + addr_part + "' is not an IPv4 or IPv6 address");
        return std::nullopt;
    }
    c.prefix = prefix.value_or(c.bits());
    if (c.prefix < 0 || c.prefix > c.bits()) {
        set_why(why, "prefix length /" + std::to_string(c.prefix) + " is out of range for " +
                         (c.family == AF_INET ? "IPv4 (0-32)" : "IPv6 (0-128)"));
        return std::nullopt;
    }
    // Host bits must be zero: "10.0.0.1/8" is almost always a typo for a /32 or a /8.
    for (int bit = c.prefix; bit < c.bits(); ++bit) {
        if (c.addr[bit / 8] & (0x80 >> (bit % 8))) {
            Cidr net = c;
            for (int b = c.prefix; b < c.bits(); ++b) net.addr[b / 8] &= ~(0x80 >> (b % 8));
            set_why(why, "'" + s + "' has host bits set; did you mean " + net.to_string() +
                             "/" + std::to_string(c.prefix) + "?");
            return std::nullopt;
        }
    }
    if (c.family == AF_INET6 && c.prefix >= 96 && is_v4_mapped(c.addr.data())) {
        Cidr v4;
        v4.family = AF_INET;
        std::memcpy(v4.addr.data(), c.addr.data() + 12, 4);
        v4.prefix = c.prefix - 96;
        return v4;
    }
    return c;
}

std::optional<Cidr> parse_address(std::string_view text) {
    if (text.find('/') != std::string_view::npos) return std::nullopt;
    return parse_cidr(text);
}

std::optional<PortRange> parse_port_range(std::string_view text, std::string* why) {
    auto parse_one = [&](std::string_view p) -> std::optional<std::uint16_t> {
        unsigned value = 0;
        auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
        if (ec != std::errc() || ptr != p.data() + p.size() || p.empty()) {
            set_why(why, std::string("'").append(p).append("' is not a port number"));  // GCC PR 105329
            return std::nullopt;
        }
        if (value < 1 || value > 65535) {
            set_why(why, "port " + std::to_string(value) + " is out of range (1-65535)");
            return std::nullopt;
        }
        return static_cast<std::uint16_t>(value);
    };
    PortRange r;
    if (auto dash = text.find('-'); dash != std::string_view::npos) {
        auto lo = parse_one(text.substr(0, dash));
        if (!lo) return std::nullopt;
        auto hi = parse_one(text.substr(dash + 1));
        if (!hi) return std::nullopt;
        if (*hi < *lo) {
            set_why(why, "port range '" + std::string(text) + "' ends before it starts");
            return std::nullopt;
        }
        r = {*lo, *hi};
    } else {
        auto p = parse_one(text);
        if (!p) return std::nullopt;
        r = {*p, *p};
    }
    return r;
}

std::vector<PortRange> normalise_ports(std::vector<PortRange> ranges) {
    std::sort(ranges.begin(), ranges.end(),
              [](const PortRange& a, const PortRange& b) { return a.lo < b.lo; });
    std::vector<PortRange> out;
    for (const auto& r : ranges) {
        if (!out.empty() && static_cast<unsigned>(r.lo) <= static_cast<unsigned>(out.back().hi) + 1) {
            out.back().hi = std::max(out.back().hi, r.hi);
        } else {
            out.push_back(r);
        }
    }
    return out;
}

}  // namespace mcpwarden
