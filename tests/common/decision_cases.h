// SPDX-License-Identifier: Apache-2.0
// One table of decisions, checked against the userspace model (unit tests) and against the
// BPF code itself (kernel tests, through the raw_tp test entry).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net.h"

namespace cases {

inline const char* kPolicy = R"(name: table
egress:
  allow:
    - cidr: 10.0.0.0/8
      ports: [443]
    - cidr: 10.1.2.0/24
      ports: [80]
      protocol: tcp
    - cidr: 192.0.2.0/24
      ports: ["8000-8080", 9000]
    - cidr: 198.51.100.7
    - cidr: 0.0.0.0/0
      ports: [53]
      protocol: udp
    - cidr: 2001:db8::/32
      ports: [443]
    - cidr: 127.0.0.1/32
      ports: [8080]
    - cidr: 203.0.113.0/24
      ports: [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21]
  deny:
    - cidr: 10.1.0.0/16
      ports: [443]
    - cidr: 192.0.2.66
    - cidr: 2001:db8:dead::/48
)";

struct Case {
    const char* address;
    std::uint16_t port;
    mcpwarden::Protocol protocol;
    bool allow;
};

inline std::vector<Case> table() {
    using mcpwarden::Protocol;
    return {
        {"10.9.9.9", 443, Protocol::tcp, true},      // allowed by address and port
        {"10.9.9.9", 443, Protocol::udp, true},      // protocol any
        {"10.9.9.9", 444, Protocol::tcp, false},     // port not allowed
        {"10.1.9.9", 443, Protocol::tcp, false},     // deny inside an allowed CIDR wins
        {"10.1.2.3", 443, Protocol::tcp, false},     // deeper allow does not undo the deny
        {"10.1.2.3", 80, Protocol::tcp, true},       // more specific allow adds a port
        {"10.1.2.3", 80, Protocol::udp, false},      // ... for tcp only
        {"192.0.2.10", 8000, Protocol::tcp, true},   // range, low end
        {"192.0.2.10", 8080, Protocol::tcp, true},   // range, high end
        {"192.0.2.10", 8081, Protocol::tcp, false},  // just outside
        {"192.0.2.10", 9000, Protocol::udp, true},
        {"192.0.2.66", 8000, Protocol::tcp, false},  // denied host inside allowed net
        {"198.51.100.7", 1, Protocol::tcp, true},    // every port
        {"198.51.100.7", 65535, Protocol::udp, true},
        {"198.51.100.8", 1, Protocol::tcp, false},   // default deny
        {"8.8.8.8", 53, Protocol::udp, true},        // udp/53 anywhere
        {"8.8.8.8", 53, Protocol::tcp, false},
        {"127.0.0.1", 53, Protocol::udp, false},     // 0.0.0.0/0 does not open loopback
        {"127.0.0.1", 8080, Protocol::tcp, true},    // an explicit loopback rule does
        {"127.0.0.2", 8080, Protocol::tcp, false},
        {"0.0.0.0", 8080, Protocol::tcp, true},      // 0.0.0.0 counts as 127.0.0.1
        {"0.0.0.0", 8081, Protocol::tcp, false},
        {"169.254.169.254", 53, Protocol::udp, false},  // metadata not opened by 0.0.0.0/0
        {"10.0.0.1", 53, Protocol::udp, false},      // private not opened by 0.0.0.0/0 ...
        {"224.0.0.251", 53, Protocol::udp, false},   // multicast
        {"255.255.255.255", 53, Protocol::udp, false},
        {"2001:db8::1", 443, Protocol::tcp, true},
        {"2001:db8::1", 80, Protocol::tcp, false},
        {"2001:db8:dead::1", 443, Protocol::tcp, false},  // v6 deny inside allow
        {"::1", 8080, Protocol::tcp, false},
        {"::", 443, Protocol::tcp, false},
        {"fe80::1", 443, Protocol::tcp, false},
        {"::ffff:10.9.9.9", 443, Protocol::tcp, true},  // v4-mapped follows the IPv4 rules
        {"::ffff:10.1.9.9", 443, Protocol::tcp, false},
        {"::ffff:127.0.0.1", 8080, Protocol::tcp, true},
        {"203.0.113.5", 13, Protocol::tcp, true},    // many ports: bitmap set
        {"203.0.113.5", 14, Protocol::tcp, false},
        {"203.0.113.5", 21, Protocol::udp, true},
    };
}

}  // namespace cases
