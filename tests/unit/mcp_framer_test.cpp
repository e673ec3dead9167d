// SPDX-License-Identifier: Apache-2.0
// Newline framing with bounded memory: splitting, CRLF, chunk boundaries, oversized lines
// (head and tail kept, exact size, resynchronisation), EOF.
#include <gtest/gtest.h>

#include <random>

#include "mcp_framer.h"

using namespace mcpwarden;

namespace {

struct Collect : LineFramer::Sink {
    std::vector<std::string> lines;
    std::string pieces;  // what piece() saw since the last line
    void piece(std::string_view p) override { pieces.append(p); }
    std::vector<std::uint64_t> oversized_sizes;
    std::vector<std::string> heads, tails;
    void line(std::string_view t) override {
        // The pieces of a line are the line (and perhaps the "\r" removed from its end),
        // after those of skipped blank lines (whitespace, which JSON ignores).
        std::string p = pieces;
        if (p.size() > t.size() && p.back() == '\r' && p.compare(p.size() - t.size(), t.size(), t) != 0) p.pop_back();
        ASSERT_GE(p.size(), t.size());
        EXPECT_EQ(p.substr(p.size() - t.size()), t);
        EXPECT_EQ(p.substr(0, p.size() - t.size()).find_first_not_of(" \t\r"), std::string::npos);
        pieces.clear();
        lines.emplace_back(t);
    }
    void oversized(const LineFramer::Oversized& o) override {
        pieces.clear();
        oversized_sizes.push_back(o.bytes);
        heads.emplace_back(o.head);
        tails.emplace_back(o.tail);
    }
};

}  // namespace

TEST(McpFramer, SplitsLinesAndStripsOneCarriageReturn) {
    LineFramer f(100);
    Collect c;
    f.feed("a\nbb\r\n\n  \r\nccc\r\r\n", c);
    EXPECT_EQ(c.lines, (std::vector<std::string>{"a", "bb", "ccc\r"}));
    f.feed("dd", c);
    EXPECT_EQ(c.lines.size(), 3u);
    f.feed("d\n", c);
    EXPECT_EQ(c.lines.back(), "ddd");
    f.feed("tail-without-newline", c);
    f.finish(c);
    EXPECT_EQ(c.lines.back(), "tail-without-newline");
}

TEST(McpFramer, AnyChunkingGivesTheSameLines) {
    std::string stream;
    std::vector<std::string> expected;
    std::mt19937 rng(7);
    for (int i = 0; i < 200; ++i) {
        std::string l(rng() % 300, 'a' + static_cast<char>(i % 26));
        if (!l.empty()) expected.push_back(l);
        stream += l + (i % 3 == 0 ? "\r\n" : "\n");
    }
    for (int round = 0; round < 20; ++round) {
        LineFramer f(1000);
        Collect c;
        size_t off = 0;
        while (off < stream.size()) {
            size_t n = std::min<size_t>(1 + rng() % 700, stream.size() - off);
            f.feed(std::string_view(stream).substr(off, n), c);
            off += n;
            EXPECT_LE(f.buffered(), 1001u);
        }
        f.finish(c);
        EXPECT_EQ(c.lines, expected);
        EXPECT_TRUE(c.oversized_sizes.empty());
    }
}

TEST(McpFramer, OversizedLineIsDiscardedWithHeadTailAndSizeThenResyncs) {
    LineFramer f(10000);
    Collect c;
    std::string big = "{\"method\":\"x\",\"params\":\"" + std::string(50000, 'p') + "\",\"id\":77}";
    f.feed("{\"ok\":1}\n", c);
    for (size_t off = 0; off < big.size(); off += 999) {
        f.feed(std::string_view(big).substr(off, 999), c);
        EXPECT_LE(f.buffered(), 10001u + 2 * LineFramer::kKeep);
    }
    f.feed("\r\n{\"ok\":2}\n", c);
    ASSERT_EQ(c.oversized_sizes.size(), 1u);
    EXPECT_EQ(c.oversized_sizes[0], big.size());
    EXPECT_EQ(c.heads[0], big.substr(0, LineFramer::kKeep));
    EXPECT_EQ(c.tails[0], big.substr(big.size() - LineFramer::kKeep));
    EXPECT_EQ(c.lines, (std::vector<std::string>{"{\"ok\":1}", "{\"ok\":2}"}));
}

TEST(McpFramer, LimitIsExact) {
    LineFramer f(5);
    Collect c;
    f.feed("12345\n123456\n12345\r\n123456\r\n", c);
    EXPECT_EQ(c.lines, (std::vector<std::string>{"12345", "12345"}));
    EXPECT_EQ(c.oversized_sizes, (std::vector<std::uint64_t>{6, 6}));
}

TEST(McpFramer, OversizedLineInOneChunkAndAtEof) {
    LineFramer f(8);
    Collect c;
    f.feed(std::string(100, 'z') + "\nok\n" + std::string(20, 'y'), c);
    f.finish(c);
    EXPECT_EQ(c.lines, (std::vector<std::string>{"ok"}));
    EXPECT_EQ(c.oversized_sizes, (std::vector<std::uint64_t>{100, 20}));
}
