// SPDX-License-Identifier: Apache-2.0
// Newline-delimited JSON-RPC framing (the MCP stdio transport) with bounded memory: a line is
// buffered up to max_line bytes; a longer one is discarded up to its newline, keeping only its
// first and last bytes (enough to recover the request id for an error reply), and framing
// resynchronises on the next line.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcpwarden {

class LineFramer {
public:
    struct Oversized {
        std::uint64_t bytes;    // the whole line's length (without the newline)
        std::string_view head;  // its first kKeep bytes
        std::string_view tail;  // its last kKeep bytes
    };
    class Sink {
    public:
        virtual ~Sink() = default;
        // One line without its "\n" and one trailing "\r". Lines of only whitespace are skipped.
        virtual void line(std::string_view text) = 0;
        // The bytes of the current line as they arrive, before line() (not for a line that turns
        // out oversized): lets a sink scan a long line while the rest is still on its way. The
        // pieces of skipped blank lines (only " ", "\t", "\r": JSON whitespace) come first.
        virtual void piece(std::string_view bytes) { (void)bytes; }
        virtual void oversized(const Oversized& o) = 0;
    };
    static constexpr std::size_t kKeep = 4096;

    explicit LineFramer(std::size_t max_line);
    // Frames more bytes. Sink calls happen before feed returns; views are valid only then.
    void feed(std::string_view chunk, Sink& sink);
    // End of the stream: an unterminated last line is delivered as if it ended.
    void finish(Sink& sink);
    // Bytes held between calls (never more than max_line + 2 * kKeep).
    std::size_t buffered() const { return buf_.size() + tail_.size(); }
    std::size_t max_line() const { return max_; }

private:
    void emit(std::string_view line, Sink& sink);
    void emit_oversized(Sink& sink);
    void keep_tail(std::string_view bytes);

    std::size_t max_;
    std::string buf_;        // the current line so far (or its head, once oversized)
    std::string tail_;       // last kKeep bytes of an oversized line
    bool discarding_ = false;
    std::uint64_t discarded_ = 0;  // length of the oversized line so far
};

}  // namespace mcpwarden
