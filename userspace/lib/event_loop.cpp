// SPDX-License-Identifier: Apache-2.0
#include "event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>

#include <cerrno>
#include <vector>

#include "error.h"

namespace mcpwarden {

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw Error(ErrorKind::internal, errno_text("epoll_create1", errno));
}

void EventLoop::add(int fd, std::uint32_t events, Handler handler) {
    struct epoll_event ev {};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
        throw Error(ErrorKind::internal, errno_text("epoll_ctl(ADD)", errno));
    handlers_[fd] = std::make_shared<Handler>(std::move(handler));
}

void EventLoop::modify(int fd, std::uint32_t events) {
    struct epoll_event ev {};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0)
        throw Error(ErrorKind::internal, errno_text("epoll_ctl(MOD)", errno));
}

void EventLoop::remove(int fd) {
    if (handlers_.erase(fd)) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

bool EventLoop::run_once(int timeout_ms) {
    if (handlers_.empty()) return false;
    struct epoll_event events[32];
    int n = ::epoll_wait(epoll_.get(), events, 32, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return true;
        throw Error(ErrorKind::internal, errno_text("epoll_wait", errno));
    }
    for (int i = 0; i < n && !stopped_; ++i) {
        auto it = handlers_.find(events[i].data.fd);
        if (it == handlers_.end()) continue;  // removed by an earlier handler of this round
        auto handler = it->second;          // keep it alive while it runs
        (*handler)(events[i].events);
    }
    return true;
}

void EventLoop::run() {
    while (!stopped_ && run_once(-1)) {
    }
}

UniqueFd make_timer(std::chrono::milliseconds after, bool periodic) {
    UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!fd) throw Error(ErrorKind::internal, errno_text("timerfd_create", errno));
    struct itimerspec spec {};
    auto ms = std::max<std::int64_t>(after.count(), 1);
    spec.it_value.tv_sec = ms / 1000;
    spec.it_value.tv_nsec = (ms % 1000) * 1000000;
    if (periodic) spec.it_interval = spec.it_value;
    if (::timerfd_settime(fd.get(), 0, &spec, nullptr) != 0)
        throw Error(ErrorKind::internal, errno_text("timerfd_settime", errno));
    return fd;
}

}  // namespace mcpwarden
