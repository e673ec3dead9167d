// SPDX-License-Identifier: Apache-2.0
// A small epoll loop: the sandbox watches its child, timers, signals, the audit ring buffer
// and the relayed stdio on one thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include "fd.h"

namespace mcpwarden {

class EventLoop {
public:
    using Handler = std::function<void(std::uint32_t events)>;

    EventLoop();
    // Calls handler whenever fd has any of events (EPOLLIN, EPOLLOUT, ...). The fd stays owned
    // by the caller, who must remove it before closing it.
    void add(int fd, std::uint32_t events, Handler handler);
    void modify(int fd, std::uint32_t events);
    void remove(int fd);
    // Runs until stop() or until no fd is watched; timeout per wait in ms (-1 = none).
    void run();
    // One round: waits up to timeout_ms and dispatches. Returns false when nothing is watched.
    bool run_once(int timeout_ms);
    void stop() { stopped_ = true; }
    bool stopped() const { return stopped_; }

private:
    UniqueFd epoll_;
    std::map<int, std::shared_ptr<Handler>> handlers_;
    bool stopped_ = false;
};

// A timerfd that fires once after `after` (or every `after` when periodic).
UniqueFd make_timer(std::chrono::milliseconds after, bool periodic);

}  // namespace mcpwarden
