// SPDX-License-Identifier: Apache-2.0
#include "mcp_framer.h"

#include <cstring>

namespace mcpwarden {

namespace {

bool blank(std::string_view s) {
    for (char c : s) {
        if (c != ' ' && c != '\t' && c != '\r') return false;
    }
    return true;
}

}  // namespace

LineFramer::LineFramer(std::size_t max_line) : max_(max_line) {}

void LineFramer::keep_tail(std::string_view bytes) {
    // One byte more than kept: a "\r" before the newline is not part of the line.
    constexpr std::size_t keep = kKeep + 1;
    if (bytes.size() >= keep) {
        tail_.assign(bytes.substr(bytes.size() - keep));
        return;
    }
    tail_.append(bytes);
    if (tail_.size() > keep) tail_.erase(0, tail_.size() - keep);
}

void LineFramer::emit(std::string_view line, Sink& sink) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_) {  // only a line of exactly max_ + 1 bytes without "\r" gets here
        sink.oversized({line.size(), line.substr(0, kKeep), line.substr(line.size() - std::min(line.size(), kKeep))});
        return;
    }
    if (blank(line)) return;
    sink.line(line);
}

void LineFramer::emit_oversized(Sink& sink) {
    std::string_view tail = tail_;
    std::uint64_t bytes = discarded_;
    if (!tail.empty() && tail.back() == '\r') {
        tail.remove_suffix(1);
        --bytes;
    }
    if (tail.size() > kKeep) tail.remove_prefix(tail.size() - kKeep);
    sink.oversized({bytes, std::string_view(buf_).substr(0, std::min(buf_.size(), kKeep)), tail});
    buf_.clear();
    buf_.shrink_to_fit();
    tail_.clear();
    discarding_ = false;
    discarded_ = 0;
}

void LineFramer::feed(std::string_view chunk, Sink& sink) {
    while (!chunk.empty()) {
        const void* nl = std::memchr(chunk.data(), '\n', chunk.size());
        std::size_t len = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - chunk.data()) : chunk.size();
        std::string_view piece = chunk.substr(0, len);
        bool delivered = false;
        if (discarding_) {
            discarded_ += piece.size();
            keep_tail(piece);
        } else if (buf_.size() + piece.size() > max_ + 1) {
            // Over the limit (a trailing "\r" may take the one extra byte): keep head and tail.
            discarding_ = true;
            discarded_ = buf_.size() + piece.size();
            tail_.clear();
            keep_tail(std::string_view(buf_).substr(buf_.size() - std::min(buf_.size(), kKeep)));
            keep_tail(piece);
            if (buf_.size() < kKeep) buf_.append(piece.substr(0, kKeep - buf_.size()));
            buf_.resize(std::min(buf_.size(), kKeep));
        } else if (nl && buf_.empty()) {
            if (piece.size() <= max_ + 1) sink.piece(piece);
            emit(piece, sink);  // the whole line is in this chunk: no copy
            delivered = true;
        } else {
            sink.piece(piece);
            buf_.append(piece);
        }
        if (!nl) return;
        if (discarding_) {
            emit_oversized(sink);
        } else if (!delivered) {
            emit(buf_, sink);
            buf_.clear();
            // Keep the allocation for the next line (fresh memory costs page faults per line)
            // unless it is beyond what ordinary results need.
            if (buf_.capacity() > (8u << 20)) buf_.shrink_to_fit();
        }
        chunk.remove_prefix(len + 1);
    }
}

void LineFramer::finish(Sink& sink) {
    if (discarding_) {
        emit_oversized(sink);
    } else if (!buf_.empty()) {
        emit(buf_, sink);
        buf_.clear();
    }
}

}  // namespace mcpwarden
