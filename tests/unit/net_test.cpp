// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <sys/socket.h>

#include "net.h"

using namespace mcpwarden;

TEST(Cidr, ParsesV4AndV6) {
    auto a = parse_cidr("10.0.0.0/8");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->family, AF_INET);
    EXPECT_EQ(a->prefix, 8);
    auto b = parse_cidr("2001:db8::/32");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->family, AF_INET6);
    EXPECT_EQ(parse_cidr("192.0.2.1")->prefix, 32);
    EXPECT_EQ(parse_cidr("::1")->prefix, 128);
}

TEST(Cidr, V4MappedBecomesV4) {
    auto c = parse_cidr("::ffff:10.1.0.0/112");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->family, AF_INET);
    EXPECT_EQ(c->prefix, 16);
    EXPECT_EQ(c->to_string(), "10.1.0.0/16");
}

TEST(Cidr, RejectsHostBitsAndBadPrefixes) {
    std::string why;
    EXPECT_FALSE(parse_cidr("10.0.0.1/8", &why));
    EXPECT_NE(why.find("10.0.0.0/8"), std::string::npos);
    EXPECT_FALSE(parse_cidr("10.0.0.0/33", &why));
    EXPECT_FALSE(parse_cidr("10.0.0.0/x", &why));
    EXPECT_FALSE(parse_cidr("example.com", &why));
}

TEST(Cidr, Contains) {
    EXPECT_TRUE(parse_cidr("10.0.0.0/8")->contains(*parse_cidr("10.1.0.0/16")));
    EXPECT_FALSE(parse_cidr("10.1.0.0/16")->contains(*parse_cidr("10.0.0.0/8")));
    EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(*parse_cidr("127.0.0.1")));
    EXPECT_FALSE(parse_cidr("::/0")->contains(*parse_cidr("127.0.0.1")));
}

TEST(Ports, RangesAndMerging) {
    EXPECT_EQ(parse_port_range("443")->lo, 443);
    EXPECT_EQ(parse_port_range("8000-8080")->hi, 8080);
    EXPECT_FALSE(parse_port_range("0"));
    EXPECT_FALSE(parse_port_range("80-20"));
    auto merged = normalise_ports({{80, 80}, {81, 90}, {443, 443}, {85, 100}});
    ASSERT_EQ(merged.size(), 2u);
    EXPECT_EQ(merged[0].hi, 100);
}
