// SPDX-License-Identifier: Apache-2.0
// Copies bytes from one fd to another through the event loop, with bounded buffering and
// backpressure: while the destination is full, the source is not read.
#pragma once

#include <functional>
#include <string>

#include "event_loop.h"

namespace mcpwarden {

class Pump {
public:
    // Both fds must be non-blocking (the pump sets O_NONBLOCK on them). on_eof runs once when
    // the source reaches end of file (or fails) and the buffer is flushed; the destination is
    // then closed if close_dst_at_eof.
    Pump(EventLoop& loop, int src, int dst, bool close_dst_at_eof, std::function<void()> on_eof = {});
    ~Pump();
    Pump(const Pump&) = delete;
    Pump& operator=(const Pump&) = delete;

    bool done() const { return done_; }
    std::uint64_t bytes() const { return bytes_; }
    // Stops pumping (the destination is closed if close_dst_at_eof).
    void finish();

private:
    void on_readable();
    void on_writable();
    bool flush();

    EventLoop& loop_;
    int src_, dst_;
    bool close_dst_;
    std::function<void()> on_eof_;
    std::string buf_;
    size_t off_ = 0;
    bool eof_ = false, done_ = false, src_watched_ = false, dst_watched_ = false;
    std::uint64_t bytes_ = 0;
};

void set_nonblocking(int fd);

}  // namespace mcpwarden
