// SPDX-License-Identifier: Apache-2.0
#include "relay.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

namespace mcpwarden {

void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

Pump::Pump(EventLoop& loop, int src, int dst, bool close_dst_at_eof, std::function<void()> on_eof)
    : loop_(loop), src_(src), dst_(dst), close_dst_(close_dst_at_eof), on_eof_(std::move(on_eof)) {
    set_nonblocking(src_);
    set_nonblocking(dst_);
    loop_.add(src_, EPOLLIN, [this](std::uint32_t) { on_readable(); });
    src_watched_ = true;
}

Pump::~Pump() {
    if (src_watched_) loop_.remove(src_);
    if (dst_watched_) loop_.remove(dst_);
}

void Pump::on_readable() {
    char chunk[65536];
    ssize_t n = ::read(src_, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        eof_ = true;
        loop_.remove(src_);
        src_watched_ = false;
        if (flush()) finish();
        return;
    }
    bytes_ += static_cast<std::uint64_t>(n);
    buf_.append(chunk, static_cast<size_t>(n));
    if (!flush()) {
        // Destination full: stop reading until it drains.
        loop_.remove(src_);
        src_watched_ = false;
    }
}

bool Pump::flush() {
    while (off_ < buf_.size()) {
        ssize_t n = ::write(dst_, buf_.data() + off_, buf_.size() - off_);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (!dst_watched_) {
                    loop_.add(dst_, EPOLLOUT, [this](std::uint32_t) { on_writable(); });
                    dst_watched_ = true;
                }
                return false;
            }
            // The reader went away: drop what is buffered, stop.
            buf_.clear();
            off_ = 0;
            eof_ = true;
            finish();
            return false;
        }
        off_ += static_cast<size_t>(n);
    }
    buf_.clear();
    off_ = 0;
    return true;
}

void Pump::on_writable() {
    if (!flush()) return;
    loop_.remove(dst_);
    dst_watched_ = false;
    if (eof_) {
        finish();
    } else if (!src_watched_) {
        loop_.add(src_, EPOLLIN, [this](std::uint32_t) { on_readable(); });
        src_watched_ = true;
    }
}

void Pump::finish() {
    if (done_) return;
    done_ = true;
    if (src_watched_) {
        loop_.remove(src_);
        src_watched_ = false;
    }
    if (dst_watched_) {
        loop_.remove(dst_);
        dst_watched_ = false;
    }
    if (close_dst_) ::close(dst_);
    if (on_eof_) on_eof_();
}

}  // namespace mcpwarden
