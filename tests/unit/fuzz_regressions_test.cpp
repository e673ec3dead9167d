// SPDX-License-Identifier: Apache-2.0
// Bugs the fuzz targets (tests/fuzz) found, one test each. The crashing inputs also stay in
// the seed corpora, which every build replays (ctest label fuzz-replay).
#include <gtest/gtest.h>

#include <string_view>

#include "error.h"
#include "net.h"
#include "policy.h"
#include "units.h"

using namespace mcpwarden;
using namespace std::string_view_literals;

// format_size went through a double and printed 9000000000000000001 as ...000.
TEST(FuzzRegression, FormatSizeIsExactAbove2Pow53) {
    EXPECT_EQ(format_size(9000000000000000001ull), "9000000000000000001B");
    EXPECT_EQ(format_size((1ull << 62) + 1024), std::to_string(((1ull << 62) + 1024) / 1024) + "KiB");
    for (std::uint64_t v : {9000000000000000001ull, (1ull << 53) + 1, 64ull << 20}) {
        auto again = parse_size(format_size(v));
        ASSERT_TRUE(again) << format_size(v);
        EXPECT_EQ(*again, v);
    }
}

// inet_pton reads up to the first NUL, so "::1\0..." was accepted as ::1.
TEST(FuzzRegression, AddressWithEmbeddedNulIsRejected) {
    std::string why;
    EXPECT_FALSE(parse_cidr("::1\0\0\0"sv, &why));
    EXPECT_NE(why.find("NUL"), std::string::npos) << why;
    EXPECT_FALSE(parse_cidr("10.0.0.0\0/8"sv));
    EXPECT_FALSE(parse_cidr("10.0.0.0/8\0"sv));
    EXPECT_FALSE(parse_address("127.0.0.1\0.evil"sv));
}

// A policy key held a reference into yaml-cpp's temporary iterator proxy (stack-use-after-
// scope under ASan, on every policy). The sanitizer stage runs this test under ASan.
TEST(FuzzRegression, PolicyKeysOutliveTheIterator) {
    Policy p = parse_policy("name: tiny\nlimits: { memory: 1Gi, pids: 10 }\nenv: { pass: [LANG] }\n",
                            "p.yaml");
    EXPECT_EQ(p.name, "tiny");
    EXPECT_EQ(p.limits.pids, 10u);
}

// The YAML reader closed a mapping by computing it + 1 past the end of its pending list
// (UBSan: pointer arithmetic on null / past the end). The sanitizer stage runs this under UBSan.
TEST(FuzzRegression, YamlReaderClosesOddAndEmptyMappings) {
    for (const char* text : {"{{{{{{{{{}{{{{{{{{{{;{~{{{{{{nuly{{{{{[{{{{{{nuly", "{}", "a: {}\n", "{a}", "[{}, {b}]"}) {
        try {
            parse_policy(text, "p.yaml");
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::policy_invalid) << text;
        }
    }
}
