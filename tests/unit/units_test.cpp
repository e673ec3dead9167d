// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "units.h"

using namespace mcpwarden;
using namespace std::chrono_literals;

TEST(ParseSize, BinaryAndDecimalUnits) {
    EXPECT_EQ(parse_size("4096"), 4096u);
    EXPECT_EQ(parse_size("64M"), 64ull << 20);
    EXPECT_EQ(parse_size("512Mi"), 512ull << 20);
    EXPECT_EQ(parse_size("512MiB"), 512ull << 20);
    EXPECT_EQ(parse_size("1G"), 1ull << 30);
    EXPECT_EQ(parse_size("1.5Gi"), 3ull << 29);
    EXPECT_EQ(parse_size("2k"), 2048u);
    EXPECT_EQ(parse_size("1MB"), 1000000u);
    EXPECT_EQ(parse_size(" 8 M "), 8ull << 20);
}

TEST(ParseSize, RejectsGarbageWithAReason) {
    std::string why;
    EXPECT_FALSE(parse_size("", &why));
    EXPECT_FALSE(parse_size("M", &why));
    EXPECT_NE(why.find("number"), std::string::npos);
    EXPECT_FALSE(parse_size("12 parsecs", &why));
    EXPECT_NE(why.find("unknown size unit"), std::string::npos);
    EXPECT_FALSE(parse_size("-5M", &why));
    EXPECT_FALSE(parse_size("99999999T", &why));
}

TEST(ParseDuration, Units) {
    EXPECT_EQ(parse_duration("1s"), 1000ms);
    EXPECT_EQ(parse_duration("500ms"), 500ms);
    EXPECT_EQ(parse_duration("10m"), 600000ms);
    EXPECT_EQ(parse_duration("1h"), 3600000ms);
    EXPECT_EQ(parse_duration("1.5s"), 1500ms);
    EXPECT_EQ(parse_duration("2m30s"), 150000ms);
    EXPECT_EQ(parse_duration("30"), 30000ms);
}

TEST(ParseDuration, RejectsGarbage) {
    std::string why;
    EXPECT_FALSE(parse_duration("", &why));
    EXPECT_FALSE(parse_duration("soon", &why));
    EXPECT_FALSE(parse_duration("5 fortnights", &why));
    EXPECT_FALSE(parse_duration("5x", &why));
    EXPECT_NE(why.find("unknown duration unit"), std::string::npos);
    EXPECT_FALSE(parse_duration("1m30", &why));
}

TEST(ParseCpu, CoresAndMillicores) {
    EXPECT_EQ(parse_cpu("1"), 1000u);
    EXPECT_EQ(parse_cpu("0.5"), 500u);
    EXPECT_EQ(parse_cpu("250m"), 250u);
    EXPECT_FALSE(parse_cpu("0"));
    EXPECT_FALSE(parse_cpu("lots"));
    EXPECT_FALSE(parse_cpu("2 cores"));
}

TEST(Format, SizesAndDurations) {
    EXPECT_EQ(format_size(64ull << 20), "64MiB");
    EXPECT_EQ(format_size(1000), "1000B");
    EXPECT_EQ(format_duration(1500ms), "1500ms");
    EXPECT_EQ(format_duration(2000ms), "2s");
}
