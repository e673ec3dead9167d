// SPDX-License-Identifier: Apache-2.0
// The limit checker: JSON syntax, UTF-8, depth/string/array limits, envelope capture, id
// recovery; fed whole and byte by byte.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "mcp_json.h"

using namespace mcpwarden;

namespace {

JsonViolation scan(std::string_view text, JsonLimits limits = {}, JsonScanner* out = nullptr) {
    JsonScanner s(limits);
    s.feed(text);
    auto v = s.finish();
    // The same text fed one byte at a time must give the same answer.
    JsonScanner bytewise(limits);
    for (char c : text) bytewise.feed(std::string_view(&c, 1));
    EXPECT_EQ(bytewise.finish(), v) << text;
    if (out) *out = s;
    return v;
}

}  // namespace

TEST(McpJson, AcceptsValidJson) {
    for (const char* t : {R"({})", R"([])", R"({"a":[1,-2.5e3,true,false,null,"x"]})", R"("s")", "0", "-0.0e-0",
                          R"({"k":{"n":{"m":[[[]]]}}})", " \t{ \"a\" : 1 } \r", R"("\u00e9\ud83d\ude00\n\"\\\/")",
                          "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "1E+2", "[0,1.25]"}) {
        EXPECT_EQ(scan(t), JsonViolation::none) << t;
        EXPECT_TRUE(nlohmann::json::accept(t)) << t;
    }
}

TEST(McpJson, RejectsInvalidJson) {
    for (const char* t : {"", "   ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-",
                          "1e", "tru", "nulll", "[1] [2]", "\"abc", "\"\\x\"", "\"\\u12g4\"", "\"a\tb\"", "{\"a\":}",
                          "[1 2]", "{\"a\":1 \"b\":2}", "+1", "NaN", "'s'"}) {
        EXPECT_EQ(scan(t), JsonViolation::syntax) << t;
        EXPECT_FALSE(nlohmann::json::accept(t)) << t;
    }
}

TEST(McpJson, RejectsInvalidUtf8AndLoneSurrogates) {
    for (const char* t : {"\"\xff\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
                          "\"\xc3\"", "\"\xe2\x82\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"", "\"\\ud83dx\""}) {
        EXPECT_EQ(scan(t), JsonViolation::utf8) << t;
        EXPECT_FALSE(nlohmann::json::accept(t)) << t;
    }
}

TEST(McpJson, DepthLimit) {
    JsonScanner s;
    EXPECT_EQ(scan("[[[1]]]", {3, 0, 0}), JsonViolation::none);
    EXPECT_EQ(scan("[[[[1]]]]", {3, 0, 0}, &s), JsonViolation::depth);
    EXPECT_EQ(s.limit(), 3u);
    EXPECT_EQ(s.observed(), 4u);
    EXPECT_EQ(scan(R"({"a":{"b":{"c":{}}}})", {3, 0, 0}), JsonViolation::depth);
    // A deep document is refused without memory growing with it.
    std::string deep(1000000, '[');
    EXPECT_EQ(scan(deep, {64, 0, 0}), JsonViolation::depth);
}

TEST(McpJson, StringLimitCountsDecodedBytesOfKeysAndValues) {
    JsonScanner s;
    EXPECT_EQ(scan(R"({"abcd":"efgh"})", {0, 4, 0}), JsonViolation::none);
    EXPECT_EQ(scan(R"({"abcd":"efghi"})", {0, 4, 0}, &s), JsonViolation::string_bytes);
    EXPECT_EQ(s.observed(), 5u);
    EXPECT_EQ(scan(R"({"abcde":1})", {0, 4, 0}), JsonViolation::string_bytes);
    // "\u00e9" is two UTF-8 bytes, "\n" one, a surrogate pair four.
    EXPECT_EQ(scan(R"("\u00e9\n\ud83d\ude00")", {0, 7, 0}), JsonViolation::none);
    EXPECT_EQ(scan(R"("\u00e9\n\ud83d\ude00")", {0, 6, 0}), JsonViolation::string_bytes);
    EXPECT_EQ(scan("\"\xc3\xa9\xc3\xa9\"", {0, 4, 0}), JsonViolation::none);
    EXPECT_EQ(scan("\"\xc3\xa9\xc3\xa9\"", {0, 3, 0}), JsonViolation::string_bytes);
}

TEST(McpJson, ArrayLimit) {
    JsonScanner s;
    EXPECT_EQ(scan("[1,2,3]", {0, 0, 3}), JsonViolation::none);
    EXPECT_EQ(scan("[1,2,3,4]", {0, 0, 3}, &s), JsonViolation::array_length);
    EXPECT_EQ(s.observed(), 4u);
    EXPECT_EQ(scan("[[1,2],[3,4],[5,6]]", {0, 0, 3}), JsonViolation::none);
    EXPECT_EQ(scan("[]", {0, 0, 1}), JsonViolation::none);
}

TEST(McpJson, EnvelopeOfARequest) {
    JsonScanner s;
    ASSERT_EQ(scan(R"({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"id":7,"method":"x"}})", {}, &s),
              JsonViolation::none);
    EXPECT_TRUE(s.envelope().is_object);
    EXPECT_TRUE(s.envelope().has_id);
    EXPECT_EQ(s.envelope().id, "42");
    EXPECT_TRUE(s.envelope().has_method);
    EXPECT_EQ(s.envelope().method, "tools/call");
    EXPECT_FALSE(s.envelope().has_result);

    ASSERT_EQ(scan(R"({"result":{"id":1},"jsonrpc":"2.0","id":"a\"b"})", {}, &s), JsonViolation::none);
    EXPECT_EQ(s.envelope().id, R"("a\"b")");
    EXPECT_TRUE(s.envelope().has_result);
    EXPECT_FALSE(s.envelope().has_method);

    // Escaped member names are the same members; the last duplicate wins.
    ASSERT_EQ(scan(R"({"\u0069d":1,"id" : -5 ,"m\u0065thod":"a\/b"})", {}, &s), JsonViolation::none);
    EXPECT_EQ(s.envelope().id, "-5");
    EXPECT_EQ(s.envelope().method, "a/b");

    ASSERT_EQ(scan("[1]", {}, &s), JsonViolation::none);
    EXPECT_FALSE(s.envelope().is_object);
}

TEST(McpJson, RecoverIdFromRejectedMessages) {
    EXPECT_EQ(recover_id(R"({"jsonrpc":"2.0","id":7,"method":"x","params":[[[[[[)"), "7");
    EXPECT_EQ(recover_id(R"({"method":"x","params":{"id":1,"a":"}"},"id":"r-1"})"), R"("r-1")");
    EXPECT_EQ(recover_id(R"({"method":"x","params":{"id":1}})"), std::nullopt);
    EXPECT_EQ(recover_id(R"({"id":null})"), std::nullopt);
    EXPECT_EQ(recover_id(R"({"id":1.5})"), std::nullopt);
    // The TypeScript SDK writes the id last: the tail of a long line has it.
    EXPECT_EQ(recover_id_from_tail(R"(xxxx"}},"jsonrpc":"2.0","id":12})"), "12");
    EXPECT_EQ(recover_id_from_tail(R"(xx"},"id":"q\"1" , "jsonrpc":"2.0" })"), R"("q\"1")");
    EXPECT_EQ(recover_id_from_tail(R"(xx","id":3}})"), std::nullopt);  // a nested "id"
    EXPECT_EQ(recover_id_from_tail(R"(xx"},"jsonrpc":"2.0"})"), std::nullopt);
}

TEST(McpJson, CanonicalIds) {
    EXPECT_EQ(canonical_id("12"), "12");
    EXPECT_EQ(canonical_id(R"("A")"), R"("A")");
    EXPECT_EQ(canonical_id(R"("\u0041")"), R"("A")");
    EXPECT_NE(canonical_id(R"("1")"), canonical_id("1"));
    EXPECT_EQ(canonical_id("9223372036854775807"), "9223372036854775807");
    EXPECT_EQ(canonical_id("1.5"), std::nullopt);
    EXPECT_EQ(canonical_id("null"), std::nullopt);
    EXPECT_EQ(canonical_id("{}"), std::nullopt);
}
