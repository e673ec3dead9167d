// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "dns_message.h"

using namespace mcpwarden;

namespace {

std::vector<std::uint8_t> name(const std::string& n) {
    std::vector<std::uint8_t> out;
    size_t start = 0;
    while (start < n.size()) {
        size_t dot = n.find('.', start);
        if (dot == std::string::npos) dot = n.size();
        out.push_back(static_cast<std::uint8_t>(dot - start));
        out.insert(out.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    out.push_back(0);
    return out;
}

void add(std::vector<std::uint8_t>& m, std::initializer_list<std::uint8_t> b) { m.insert(m.end(), b); }

// alias.test CNAME real.test (compressed owner), real.test A 127.0.0.2, ttl 30 / 60.
std::vector<std::uint8_t> cname_answer() {
    std::vector<std::uint8_t> m{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0};
    auto q = name("Alias.TEST");
    m.insert(m.end(), q.begin(), q.end());
    add(m, {0, 1, 0, 1});
    add(m, {0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30});
    auto t = name("real.test");
    add(m, {0, static_cast<std::uint8_t>(t.size())});
    size_t target = m.size();
    m.insert(m.end(), t.begin(), t.end());
    add(m, {0xc0, static_cast<std::uint8_t>(target), 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 2});
    return m;
}

}  // namespace

TEST(DnsMessage, ParsesQuery) {
    auto q = dns_make_query(0xbeef, "api.github.com", dns::kTypeAaaa);
    auto m = parse_dns(q);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id, 0xbeef);
    EXPECT_FALSE(m->is_response());
    ASSERT_EQ(m->questions.size(), 1u);
    EXPECT_EQ(m->questions[0].name, "api.github.com");
    EXPECT_EQ(m->questions[0].qtype, dns::kTypeAaaa);
}

TEST(DnsMessage, FollowsCnameChainsWithCompression) {
    auto a = cname_answer();
    auto m = parse_dns(a);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->questions[0].name, "alias.test");  // lower-cased
    ASSERT_EQ(m->answers.size(), 2u);
    EXPECT_EQ(m->answers[0].target, "real.test");
    auto addrs = dns_addresses_for(*m, "alias.test");
    ASSERT_EQ(addrs.size(), 1u);
    EXPECT_EQ(addrs[0].address, (std::vector<std::uint8_t>{127, 0, 0, 2}));
    EXPECT_EQ(addrs[0].ttl, 30u);  // the smallest TTL along the chain
    // An address for a name outside the chain is not attributed to the question.
    EXPECT_TRUE(dns_addresses_for(*m, "other.test").empty());
}

TEST(DnsMessage, RejectsMalformed) {
    std::string why;
    std::vector<std::uint8_t> shortmsg{1, 2, 3};
    EXPECT_FALSE(parse_dns(shortmsg, &why));
    EXPECT_NE(why.find("header"), std::string::npos);
    auto q = dns_make_query(1, "example.com", 1);
    q.resize(q.size() - 3);
    EXPECT_FALSE(parse_dns(q, &why));
    // A compression pointer to itself.
    std::vector<std::uint8_t> loop{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    EXPECT_FALSE(parse_dns(loop, &why));
    // An A record with 5 bytes of data.
    auto a = cname_answer();
    a[a.size() - 5] = 5;
    a.push_back(0);
    EXPECT_FALSE(parse_dns(a, &why));
    // Implausible counts.
    std::vector<std::uint8_t> counts{0, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0};
    EXPECT_FALSE(parse_dns(counts, &why));
}

TEST(DnsMessage, ErrorReplyKeepsTheQuestion) {
    auto q = dns_make_query(0x4242, "evil.example", 1);
    auto r = dns_error_reply(q, dns::kRcodeRefused);
    auto m = parse_dns(r);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->id, 0x4242);
    EXPECT_TRUE(m->is_response());
    EXPECT_EQ(m->rcode(), dns::kRcodeRefused);
    ASSERT_EQ(m->questions.size(), 1u);
    EXPECT_EQ(m->questions[0].name, "evil.example");
    EXPECT_TRUE(m->answers.empty());
}
