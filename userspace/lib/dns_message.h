// SPDX-License-Identifier: Apache-2.0
// DNS wire format: just what the resolver needs to decide and learn — the question, and the
// answer records with CNAME targets and addresses. Untrusted input (from the sandbox and from
// upstream): every read is bounds-checked, compression loops are bounded, and any malformed
// message is rejected with a reason (fuzzed in tests/fuzz/dns_message_fuzz.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mcpwarden {

namespace dns {
constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeAaaa = 28;
constexpr std::uint8_t kRcodeServfail = 2;
constexpr std::uint8_t kRcodeNxdomain = 3;
constexpr std::uint8_t kRcodeRefused = 5;
constexpr std::uint16_t kFlagQr = 0x8000;
constexpr std::uint16_t kFlagTc = 0x0200;
}  // namespace dns

struct DnsQuestion {
    std::string name;  // lower case, no trailing dot ("" = the root)
    std::uint16_t qtype = 0;
    std::uint16_t qclass = 0;
};

struct DnsRecord {
    std::string name;  // owner, lower case
    std::uint16_t type = 0;
    std::uint16_t rclass = 0;
    std::uint32_t ttl = 0;
    std::string target;                 // CNAME: the canonical name, lower case
    std::vector<std::uint8_t> address;  // A: 4 bytes, AAAA: 16 bytes
};

struct DnsMessage {
    std::uint16_t id = 0;
    std::uint16_t flags = 0;
    std::vector<DnsQuestion> questions;
    std::vector<DnsRecord> answers;  // the answer section only
    bool is_response() const { return flags & dns::kFlagQr; }
    bool truncated() const { return flags & dns::kFlagTc; }
    std::uint8_t rcode() const { return flags & 0xf; }
    std::uint8_t opcode() const { return (flags >> 11) & 0xf; }
};

// Parses a whole message (header, questions, answers; authority and additional sections are
// skipped over but checked for bounds). nullopt + why on any malformation.
std::optional<DnsMessage> parse_dns(std::span<const std::uint8_t> wire, std::string* why = nullptr);

// A response to `query` (its raw bytes) carrying only the question and the given rcode.
std::vector<std::uint8_t> dns_error_reply(std::span<const std::uint8_t> query, std::uint8_t rcode);

// The addresses an answer gives for `qname`, following CNAME chains from it (at most 16
// links); each with the smallest TTL along its chain.
struct DnsAddress {
    std::vector<std::uint8_t> address;
    std::uint32_t ttl = 0;
};
std::vector<DnsAddress> dns_addresses_for(const DnsMessage& answer, const std::string& qname);

// Builds a query (used by tests and benchmarks).
std::vector<std::uint8_t> dns_make_query(std::uint16_t id, const std::string& name, std::uint16_t qtype);

}  // namespace mcpwarden
