// SPDX-License-Identifier: Apache-2.0
#include "mcp_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <sstream>

#include <spdlog/spdlog.h>

#include "error.h"
#include "exit_codes.h"
#include "relay.h"
#include "units.h"
#include "version.h"

namespace mcpwarden {

using nlohmann::json;

namespace {

constexpr std::size_t kServerReadChunk = 1024 * 1024;  // a whole (enlarged) pipe per read
constexpr std::size_t kClientReadChunk = 64 * 1024;
constexpr std::size_t kStderrQueueMax = 256 * 1024;
constexpr int kPipeSize = 1 << 20;  // server stderr waiting for our stderr
constexpr const char* kClientName = "mcpwarden";
constexpr const char* kClientVersion = MCPWARDEN_VERSION;
constexpr const char* kLegacyVersion = "2025-11-25";

void drain_timer(int fd) {
    std::uint64_t n;
    (void)!::read(fd, &n, sizeof n);
}

void arm_at(int fd, McpSession::Clock::time_point when) {
    // steady_clock is CLOCK_MONOTONIC on Linux: arm the timerfd for the absolute time.
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
    if (ns <= 0) ns = 1;
    struct itimerspec spec {};
    spec.it_value.tv_sec = ns / 1000000000;
    spec.it_value.tv_nsec = ns % 1000000000;
    ::timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void disarm(int fd) {
    struct itimerspec spec {};
    ::timerfd_settime(fd, 0, &spec, nullptr);
}

// The framer's sink for one direction.
struct SessionSink : LineFramer::Sink {
    McpSession& session;
    bool from_client;
    McpSession::Clock::time_point now;
    SessionSink(McpSession& s, bool c) : session(s), from_client(c), now(McpSession::Clock::now()) {}
    void line(std::string_view text) override {
        if (from_client) session.client_line(text, now);
        else session.server_line(text, now);
    }
    void piece(std::string_view bytes) override {
        if (!from_client) session.server_piece(bytes);  // scan results while they arrive
    }
    void oversized(const LineFramer::Oversized& o) override {
        if (from_client) session.client_oversized(o, now);
        else session.server_oversized(o, now);
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
MessageQueue::MessageQueue(EventLoop& loop, UniqueFd fd, std::function<void()> on_progress)
    : loop_(loop), fd_(std::move(fd)), on_progress_(std::move(on_progress)) {
    set_nonblocking(fd_.get());
}

MessageQueue::~MessageQueue() { detach(); }

void MessageQueue::detach() { watch(false); }

void MessageQueue::watch(bool on) {
    if (on == watching_ || !fd_) return;
    if (on) {
        loop_.add(fd_.get(), EPOLLOUT, [this](std::uint32_t) {
            write_some();
            if (on_progress_) on_progress_();
        });
    } else {
        loop_.remove(fd_.get());
    }
    watching_ = on;
}

void MessageQueue::push(std::string_view message) {
    if (broken_ || !fd_) return;
    if (pending_bytes() == 0) {
        // Nothing queued: write directly, message and newline in one system call.
        struct iovec iov[2] = {{const_cast<char*>(message.data()), message.size()}, {const_cast<char*>("\n"), 1}};
        ssize_t n;
        do n = ::writev(fd_.get(), iov, 2);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN) {
            broken_ = true;
            return;
        }
        std::size_t done = n > 0 ? static_cast<std::size_t>(n) : 0;
        if (done == message.size() + 1) return;
        buf_.clear();
        off_ = 0;
        if (done < message.size()) buf_.append(message.substr(done));
        buf_.push_back('\n');
        watch(true);
        return;
    }
    buf_.append(message);
    buf_.push_back('\n');
}

bool MessageQueue::write_some() {
    while (off_ < buf_.size()) {
        ssize_t n = ::write(fd_.get(), buf_.data() + off_, buf_.size() - off_);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return false;
            broken_ = true;
            buf_.clear();
            off_ = 0;
            break;
        }
        off_ += static_cast<std::size_t>(n);
    }
    buf_.clear();
    if (buf_.capacity() > (4u << 20)) buf_.shrink_to_fit();
    off_ = 0;
    watch(false);
    if (close_when_drained_) close();
    return true;
}

void MessageQueue::close_when_drained() {
    close_when_drained_ = true;
    if (pending_bytes() == 0) close();
}

void MessageQueue::close() {
    watch(false);
    fd_.reset();
    buf_.clear();
    off_ = 0;
}

bool MessageQueue::flush_for(std::chrono::milliseconds max) {
    auto until = std::chrono::steady_clock::now() + max;
    while (fd_ && pending_bytes() > 0 && !broken_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        struct pollfd p = {fd_.get(), POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
        write_some();
    }
    return pending_bytes() == 0;
}

// ---------------------------------------------------------------------------------------------
McpChannel::McpChannel(McpConfig config)
    : config_(std::move(config)), server_framer_(config_.max_result_bytes), read_buf_(kServerReadChunk) {}

McpChannel::~McpChannel() = default;

void McpChannel::after_spawn(Sandbox& sandbox, int child_stdin, int child_stdout, int child_stderr) {
    sandbox_ = &sandbox;
    loop_ = &sandbox.loop();
    Sandbox* sb = &sandbox;
    session_ = std::make_unique<McpSession>(
        config_, McpSession::Io{[this](std::string_view m) { deliver(m); },
                                [this](std::string_view m) {
                                    if (server_in_) server_in_->push(m);
                                },
                                [sb] { return sb->egress_denied(); }, [sb] { return sb->dns_refused(); }});
    server_in_ = std::make_unique<MessageQueue>(*loop_, UniqueFd(child_stdin), [this] { update(); });
    server_out_.reset(child_stdout);
    server_err_.reset(child_stderr);
    set_nonblocking(server_out_.get());
    set_nonblocking(server_err_.get());
    // Larger pipes for results: fewer wake-ups per megabyte (best effort).
    ::fcntl(server_out_.get(), F_SETPIPE_SZ, kPipeSize);
    ::fcntl(child_stdin, F_SETPIPE_SZ, kPipeSize);
    // Our stderr takes the server's (it is the log channel of an MCP stdio server), without
    // ever blocking the server: what does not fit is counted and dropped.
    my_err_.reset(::fcntl(sandbox.options().stdio_fd(2), F_DUPFD_CLOEXEC, 3));
    loop_->add(server_err_.get(), EPOLLIN, [this](std::uint32_t) { on_stderr_readable(); });
    deadline_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!deadline_timer_) throw Error(ErrorKind::internal, errno_text("timerfd_create", errno));
    loop_->add(deadline_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_deadline(); });
    // Until the server first answers, refusals are watched for (a few wake-ups a second).
    refusal_timer_ = make_timer(std::chrono::milliseconds(250), true);
    loop_->add(refusal_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_refusal_tick(); });
    client_start();
    update();
}

void McpChannel::from_client(std::string_view line) { session_->client_line(line, Clock::now()); }

void McpChannel::from_client_oversized(const LineFramer::Oversized& o) { session_->client_oversized(o, Clock::now()); }

std::size_t McpChannel::server_backlog() const { return server_in_ ? server_in_->pending_bytes() : 0; }

void McpChannel::update() {
    if (cleaned_ || !session_) return;
    client_update();  // first: McpCall may send, which changes deadlines and backlogs
    bool want = server_out_ && !server_out_eof_ && !client_busy();
    if (want != server_out_watched_) {
        if (want) loop_->add(server_out_.get(), EPOLLIN, [this](std::uint32_t) { on_server_readable(); });
        else loop_->remove(server_out_.get());
        server_out_watched_ = want;
    }
    auto next = session_->next_deadline();
    if (next != armed_) {
        if (next) arm_at(deadline_timer_.get(), *next);
        else disarm(deadline_timer_.get());
        armed_ = next;
    }
}

void McpChannel::on_server_readable() {
    ssize_t n = ::read(server_out_.get(), read_buf_.data(), read_buf_.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        server_eof();
        update();
        return;
    }
    SessionSink sink(*session_, false);
    server_framer_.feed(std::string_view(read_buf_.data(), static_cast<std::size_t>(n)), sink);
    update();
}

void McpChannel::server_eof() {
    if (server_out_eof_) return;
    server_out_eof_ = true;
    if (server_out_watched_) loop_->remove(server_out_.get());
    server_out_watched_ = false;
    SessionSink sink(*session_, false);
    server_framer_.finish(sink);
    server_out_.reset();
}

void McpChannel::on_stderr_readable() {
    char buf[65536];
    ssize_t n = ::read(server_err_.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        stderr_eof_ = true;
        loop_->remove(server_err_.get());
        server_err_.reset();
        return;
    }
    stderr_queue_.append(buf, static_cast<std::size_t>(n));
    if (stderr_queue_.size() > kStderrQueueMax) {
        // Whoever reads our stderr is slower than the server writes: drop, never block it.
        stderr_dropped_ += stderr_queue_.size() - kStderrQueueMax;
        stderr_queue_.erase(0, stderr_queue_.size() - kStderrQueueMax);
    }
    flush_stderr();
}

void McpChannel::flush_stderr() {
    // Our stderr is shared with the log and stays blocking; a pipe that polls writable takes a
    // write of up to PIPE_BUF bytes without blocking, so write in such pieces while it does.
    std::size_t off = 0;
    while (my_err_ && off < stderr_queue_.size()) {
        struct pollfd p = {my_err_.get(), POLLOUT, 0};
        if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLOUT)) break;
        std::size_t len = std::min<std::size_t>(stderr_queue_.size() - off, PIPE_BUF);
        ssize_t w = ::write(my_err_.get(), stderr_queue_.data() + off, len);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno != EAGAIN) {
                stderr_dropped_ += stderr_queue_.size() - off;  // nobody reads it any more
                off = stderr_queue_.size();
            }
            break;
        }
        off += static_cast<std::size_t>(w);
    }
    stderr_queue_.erase(0, off);
    bool want = my_err_ && !stderr_queue_.empty();
    if (want != stderr_watched_) {
        try {
            if (want) loop_->add(my_err_.get(), EPOLLOUT, [this](std::uint32_t) { flush_stderr(); });
            else loop_->remove(my_err_.get());
            stderr_watched_ = want;
        } catch (const Error&) {
            // A regular file (not pollable) never makes a writer wait: nothing to watch.
        }
    }
}

void McpChannel::on_deadline() {
    drain_timer(deadline_timer_.get());
    armed_.reset();
    session_->expire(Clock::now());
    update();
}

Error handshake_refused(const std::vector<Refusal>& refused, std::uint64_t dns_refused, std::uint64_t egress_denied) {
    nlohmann::json what = nlohmann::json::array(), rules = nlohmann::json::array();
    std::string list, add;
    for (const auto& r : refused) {
        what.push_back(r.what);
        list += (list.empty() ? "" : ", ") + r.what;
        if (r.rule.is_null() || std::find(rules.begin(), rules.end(), r.rule) != rules.end()) continue;
        rules.push_back(r.rule);
        // JSON is YAML: the entry can be pasted under egress.allow as it is.
        add += " - " + r.rule.dump();
    }
    std::string message = "the server has not answered its handshake " + format_duration(kRefusalGrace) +
                          " after the policy refused its network access to " + (list.empty() ? "a destination" : list) +
                          " (" + std::to_string(dns_refused) + " DNS queries refused, " + std::to_string(egress_denied) +
                          " connections denied); ";
    message += add.empty() ? "allow what it needs with egress rules in the policy (egress.allow: "
                             "- host: NAME, ports: [443], protocol: tcp; "
                           : "to allow it, add to the policy's egress.allow:" + add + " (";
    message += "policies/package-fetch.yaml has the package registries' rules)";
    return Error(ErrorKind::egress_denied, message,
                 {{"refused", what}, {"rules", rules}, {"dns_refused", dns_refused}, {"egress_denied", egress_denied},
                  {"rule", "egress.allow"}});
}

void McpChannel::on_refusal_tick() {
    drain_timer(refusal_timer_.get());
    auto stop = [this] {
        loop_->remove(refusal_timer_.get());
        refusal_timer_.reset();
    };
    if (session_->server_answered() || shutting_down()) return stop();
    auto now = Clock::now();
    std::uint64_t dns = sandbox_->dns_refused(), denied = sandbox_->egress_denied();
    if (dns + denied == 0) return;
    if (!first_refusal_) first_refusal_ = now;
    if (now - *first_refusal_ < kRefusalGrace || !session_->handshake_pending()) return;
    auto refused = sandbox_->refused_destinations();
    std::string list;
    for (const auto& r : refused) list += (list.empty() ? "" : ", ") + r.what;
    // One line for the person watching stderr; the client gets the same in its error.
    spdlog::warn("the policy refused: {}; the server has not started (add egress rules for what it needs)",
                 list.empty() ? "a destination" : list);
    session_->fail_handshake(handshake_refused(refused, dns, denied), now);
    stop();
    update();
}

void McpChannel::signal_sandbox(int sig) {
    std::string procs;
    bool any = false;
    if (read_file(sandbox_->cgroup().unified_path() + "/cgroup.procs", procs)) {
        std::istringstream in(procs);
        pid_t pid;
        while (in >> pid) {
            ::kill(pid, sig);
            any = true;
        }
    }
    if (!any && sandbox_->child_pid() > 0) ::kill(sandbox_->child_pid(), sig);
}

void McpChannel::begin_shutdown() {
    if (shutdown_phase_ > 0 || cleaned_) return;
    shutdown_phase_ = 1;
    spdlog::debug("mcp: closing the server's stdin");
    if (server_in_) server_in_->close_when_drained();
    shutdown_timer_ = make_timer(kShutdownStdinWait, false);
    loop_->add(shutdown_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_shutdown_timer(); });
}

void McpChannel::on_shutdown_timer() {
    drain_timer(shutdown_timer_.get());
    loop_->remove(shutdown_timer_.get());
    if (shutdown_phase_ == 1) {
        spdlog::info("mcp: the server still runs {} after its stdin closed: SIGTERM",
                     format_duration(kShutdownStdinWait));
        if (server_in_) server_in_->close();
        signal_sandbox(SIGTERM);
        shutdown_phase_ = 2;
        shutdown_timer_ = make_timer(kShutdownTermWait, false);
        loop_->add(shutdown_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_shutdown_timer(); });
    } else if (shutdown_phase_ == 2) {
        spdlog::warn("mcp: the server still runs {} after SIGTERM: killing the sandbox",
                     format_duration(kShutdownTermWait));
        shutdown_phase_ = 3;
        sandbox_->cgroup().kill();
    }
}

bool McpChannel::draining() const {
    return (server_out_ && !server_out_eof_) || (server_err_ && !stderr_eof_) || client_draining();
}

void McpChannel::on_end(Sandbox&, RunReport& report) {
    if (!session_) return;
    ending_ = true;
    if (!server_out_eof_) server_eof();
    // Whatever is still pending gets an error that names how the sandbox ended.
    ErrorKind kind = ErrorKind::server_exited;
    std::string message;
    json details = {{"status", report.status}};
    if (report.exit_code) details["exit_code"] = *report.exit_code;
    if (report.signal) details["signal"] = *report.signal;
    if (report.status == "memory_exceeded") {
        kind = ErrorKind::memory_exceeded;
        message = "the sandbox reached its memory limit";
        if (report.limits.memory_bytes) {
            message += " (" + format_size(*report.limits.memory_bytes) + ")";
            details["limit"] = *report.limits.memory_bytes;
        }
        message += " and was ended";
    } else if (report.status == "pids_exceeded") {
        kind = ErrorKind::pids_exceeded;
        message = "the sandbox reached its process limit";
        if (report.limits.pids) {
            message += " (" + std::to_string(*report.limits.pids) + ")";
            details["limit"] = *report.limits.pids;
        }
        message += " and was ended";
    } else if (report.status == "timeout") {
        kind = ErrorKind::timeout;
        message = "the sandbox reached its wall-clock timeout";
        if (report.limits.timeout) {
            message += " (" + format_duration(*report.limits.timeout) + ")";
            details["limit_ms"] = report.limits.timeout->count();
        }
        message += " and was ended";
    } else if (report.status == "interrupted") {
        message = "mcpwarden was interrupted (signal " + std::to_string(report.signal.value_or(0)) + ") and ended the sandbox";
    } else if (report.signal) {
        message = "the server was killed by signal " + std::to_string(*report.signal);
    } else {
        message = "the server exited (status " + std::to_string(report.exit_code.value_or(0)) + ")";
    }
    // (McpCall may still send: it answers what it receives; answer that too, a few rounds.)
    for (int round = 0; round < 4; ++round) {
        session_->fail_pending(kind, message, details, Clock::now());
        client_update();
        if (session_->pending() == 0) break;
    }
    client_end();
    if (stderr_dropped_ > 0)
        spdlog::warn("mcp: {} bytes of the server's stderr were dropped (stderr was not read fast enough)", stderr_dropped_);
    json mcp = session_->stats().to_json();
    mcp["stderr_dropped_bytes"] = stderr_dropped_;
    report.extra["mcp"] = mcp;
    cleanup();
}

void McpChannel::cleanup() {
    if (cleaned_) return;
    cleaned_ = true;
    if (server_in_) {
        server_in_->detach();
        server_in_->close();
    }
    if (server_out_watched_) loop_->remove(server_out_.get());
    server_out_watched_ = false;
    server_out_.reset();
    if (server_err_) loop_->remove(server_err_.get());
    server_err_.reset();
    if (stderr_watched_) loop_->remove(my_err_.get());
    stderr_watched_ = false;
    if (!stderr_queue_.empty()) {
        // Last words of the server: give them a moment, then let them go.
        struct pollfd p = {my_err_.get(), POLLOUT, 0};
        if (my_err_ && ::poll(&p, 1, 200) > 0) flush_stderr();
        if (stderr_watched_) loop_->remove(my_err_.get());
        stderr_watched_ = false;
    }
    if (deadline_timer_) loop_->remove(deadline_timer_.get());
    if (shutdown_timer_) loop_->remove(shutdown_timer_.get());
    if (refusal_timer_) loop_->remove(refusal_timer_.get());
    deadline_timer_.reset();
    shutdown_timer_.reset();
    refusal_timer_.reset();
}

// ---------------------------------------------------------------------------------------------
McpProxy::McpProxy(McpConfig config)
    : McpChannel(config), client_framer_(config.max_message_bytes), read_buf_(kClientReadChunk) {}

McpProxy::~McpProxy() {
    // Give mcpwarden's stdin and stdout their blocking mode back.
    if (in_flags_ >= 0) ::fcntl(client_in_, F_SETFL, in_flags_);
    if (out_flags_ >= 0) ::fcntl(client_out_, F_SETFL, out_flags_);
}

void McpProxy::client_start() {
    // mcpwarden's own stdin and stdout, or the client's that the agent was given.
    client_in_ = sandbox_->options().stdio_fd(0);
    client_out_ = sandbox_->options().stdio_fd(1);
    in_flags_ = ::fcntl(client_in_, F_GETFL);
    out_flags_ = ::fcntl(client_out_, F_GETFL);
    in_.reset(::fcntl(client_in_, F_DUPFD_CLOEXEC, 3));
    int out = ::fcntl(client_out_, F_DUPFD_CLOEXEC, 3);
    if (!in_ || out < 0) throw Error(ErrorKind::internal, errno_text("dup stdin/stdout", errno));
    set_nonblocking(in_.get());
    ::fcntl(out, F_SETPIPE_SZ, kPipeSize);  // when stdout is a pipe; best effort
    out_ = std::make_unique<MessageQueue>(*loop_, UniqueFd(out), [this] { update(); });
    // Regular files and /dev/null cannot be watched by epoll; they are always readable, which an
    // eventfd holding a count stands for.
    struct epoll_event ev {};
    int probe = ::epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    bool pollable = ::epoll_ctl(probe, EPOLL_CTL_ADD, in_.get(), &ev) == 0;
    ::close(probe);
    if (!pollable) ready_.reset(::eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));
}

void McpProxy::client_update() {
    bool want = !in_eof_ && !shutting_down() && !client_busy() && server_backlog() < kHighWater &&
                session().pending() < session().config().max_pending;
    int fd = ready_ ? ready_.get() : in_.get();
    if (want && in_watch_ < 0) {
        loop_->add(fd, EPOLLIN, [this](std::uint32_t) { on_client_readable(); });
        in_watch_ = fd;
    } else if (!want && in_watch_ >= 0) {
        loop_->remove(in_watch_);
        in_watch_ = -1;
    }
}

void McpProxy::on_client_readable() {
    ssize_t n = ::read(in_.get(), read_buf_.data(), read_buf_.size());
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    struct Sink : LineFramer::Sink {
        McpProxy& p;
        explicit Sink(McpProxy& proxy) : p(proxy) {}
        void line(std::string_view text) override { p.from_client(text); }
        void oversized(const LineFramer::Oversized& o) override { p.from_client_oversized(o); }
    } sink(*this);
    if (n <= 0) {
        in_eof_ = true;
        client_framer_.finish(sink);
        if (in_watch_ >= 0) loop_->remove(in_watch_);
        in_watch_ = -1;
        spdlog::debug("mcp: the client closed its end (stdin EOF)");
        begin_shutdown();
        update();
        return;
    }
    client_framer_.feed(std::string_view(read_buf_.data(), static_cast<std::size_t>(n)), sink);
    update();
}

void McpProxy::deliver(std::string_view message) { out_->push(message); }

bool McpProxy::client_busy() const { return out_ && out_->pending_bytes() > kHighWater; }

bool McpProxy::client_draining() const { return out_ && out_->pending_bytes() > 0 && !out_->broken(); }

void McpProxy::client_end() {
    if (in_watch_ >= 0) loop_->remove(in_watch_);
    in_watch_ = -1;
    if (out_) {
        out_->flush_for(std::chrono::seconds(2));
        out_->detach();
    }
}

// ---------------------------------------------------------------------------------------------
json CallOutcome::to_json() const {
    if (ok) return result;
    return {{"error", error}};
}

int CallOutcome::exit_code() const {
    if (ok) return result.is_object() && result.value("isError", false) ? exit_code::call_tool_error : 0;
    switch (kind) {
        case ErrorKind::input_too_large:
        case ErrorKind::input_invalid: return exit_code::input_rejected;
        case ErrorKind::tool_denied: return exit_code::tool_denied;
        case ErrorKind::call_timeout: return exit_code::call_timeout;
        case ErrorKind::result_too_large: return exit_code::result_too_large;
        case ErrorKind::result_invalid: return exit_code::result_invalid;
        case ErrorKind::memory_exceeded: return exit_code::memory_exceeded;
        case ErrorKind::pids_exceeded: return exit_code::pids_exceeded;
        case ErrorKind::timeout: return exit_code::timeout;
        case ErrorKind::server_exited:
        case ErrorKind::egress_denied: return exit_code::server_exited;  // it never answered
        case ErrorKind::server_error: return exit_code::call_server_error;
        default: return exit_code::internal;
    }
}

McpCall::McpCall(McpConfig config, CallRequest request) : McpChannel([&] {
      config.time_every_request = true;  // the handshake too: a server that never answers ends
      return config;
  }()), request_(std::move(request)) {}

void McpCall::send(const json& message) { from_client(message.dump(-1, ' ', false, json::error_handler_t::replace)); }

void McpCall::client_start() {
    send({{"jsonrpc", "2.0"},
          {"id", 1},
          {"method", "initialize"},
          {"params",
           {{"protocolVersion", kLegacyVersion},
            {"capabilities", json::object()},
            {"clientInfo", {{"name", kClientName}, {"version", kClientVersion}}}}}});
}

void McpCall::send_request(const json& meta) {
    json params = request_.params.is_object() ? request_.params : json::object();
    if (!meta.is_null()) params["_meta"] = meta;
    phase_ = Phase::request;
    send({{"jsonrpc", "2.0"}, {"id", 2}, {"method", request_.method}, {"params", params}});
}

void McpCall::deliver(std::string_view message) {
    // Handled after the session call returns (the session is not re-entered).
    inbox_.emplace_back(message);
}

void McpCall::client_update() {
    while (!inbox_.empty()) {
        std::string m = std::move(inbox_.front());
        inbox_.pop_front();
        json msg = json::parse(m, nullptr, false);
        if (msg.is_object()) handle(msg);
    }
}

void McpCall::client_end() {
    if (!outcome_.done) {
        // Never leave `call` without an answer (the server ended with nothing pending at us).
        outcome_.done = true;
        outcome_.kind = ErrorKind::server_exited;
        outcome_.error = {{"kind", "server_exited"},
                          {"message", "the server ended before it answered"},
                          {"code", mcp_code::server_exited}};
    }
}

void McpCall::finish_ok(const json& result) {
    if (outcome_.done) return;
    outcome_.done = true;
    outcome_.ok = true;
    outcome_.result = result;
    phase_ = Phase::done;
    begin_shutdown();
}

void McpCall::finish_error(const json& err, bool from_server) {
    if (outcome_.done) return;
    outcome_.done = true;
    outcome_.ok = false;
    json data = err.contains("data") ? err["data"] : json();
    if (!from_server && data.is_object() && data.contains("kind")) {
        // One of ours: data is {kind, message, figures}; the JSON-RPC code goes with it.
        outcome_.error = data;
        outcome_.error["code"] = err.value("code", 0);
        std::string kind = data["kind"].get<std::string>();
        for (auto k : {ErrorKind::input_too_large, ErrorKind::input_invalid, ErrorKind::tool_denied,
                       ErrorKind::call_timeout, ErrorKind::result_too_large, ErrorKind::result_invalid,
                       ErrorKind::memory_exceeded, ErrorKind::pids_exceeded, ErrorKind::timeout,
                       ErrorKind::server_exited, ErrorKind::egress_denied}) {
            if (kind == to_string(k)) outcome_.kind = k;
        }
    } else {
        outcome_.kind = ErrorKind::server_error;
        outcome_.error = {{"kind", "server_error"},
                          {"message", "the server answered with an error: " + err.value("message", std::string())},
                          {"code", err.value("code", 0)}};
        if (!data.is_null()) outcome_.error["data"] = data;
    }
    phase_ = Phase::done;
    begin_shutdown();
}

void McpCall::handle(const json& msg) {
    if (msg.contains("method")) {
        // A server->client request gets a minimal answer, so the server is never left waiting;
        // notifications (logging, progress) are only logged.
        if (!msg.contains("id")) {
            spdlog::debug("mcp call: server notification {}", msg["method"].dump());
            return;
        }
        std::string method = msg["method"].is_string() ? msg["method"].get<std::string>() : "";
        json reply = {{"jsonrpc", "2.0"}, {"id", msg["id"]}};
        if (method == "ping") reply["result"] = json::object();
        else if (method == "roots/list") reply["result"] = {{"roots", json::array()}};
        else reply["error"] = {{"code", -32601}, {"message", "mcpwarden call does not serve " + method}};
        send(reply);
        return;
    }
    if (!msg.contains("id")) {
        // An error without id: input we sent was refused before it had one (cannot happen for
        // our own well-formed requests, but never hang on it).
        if (msg.contains("error")) finish_error(msg["error"], false);
        return;
    }
    int id = msg["id"].is_number_integer() ? msg["id"].get<int>() : 0;
    const bool is_error = msg.contains("error");
    const json err = is_error ? msg["error"] : json();
    const bool ours = is_error && err.contains("data") && err["data"].is_object() && err["data"].contains("kind");
    if (id == 1 && phase_ == Phase::initialize) {
        if (!is_error) {
            const json& r = msg["result"];
            if (r.is_object() && r.contains("protocolVersion") && r["protocolVersion"].is_string())
                outcome_.protocol_version = r["protocolVersion"].get<std::string>();
            send({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}});
            send_request(json());
        } else if (ours || ending_) {
            finish_error(err, !ours);
        } else {
            // Perhaps a stateless (2026-07-28) server: ask it what it speaks.
            init_error_ = err;
            phase_ = Phase::discover;
            send({{"jsonrpc", "2.0"}, {"id", 3}, {"method", "server/discover"}, {"params", json::object()}});
        }
        return;
    }
    if (id == 3 && phase_ == Phase::discover) {
        std::string version;
        if (!is_error && msg["result"].is_object() && msg["result"].contains("supportedVersions") &&
            msg["result"]["supportedVersions"].is_array()) {
            for (const auto& v : msg["result"]["supportedVersions"]) {
                if (v.is_string() && v.get<std::string>() > version) version = v.get<std::string>();
            }
        }
        if (version.empty() || ending_) {
            // The sandbox ending is the news; otherwise the server's answer to initialize is.
            if (ending_ && ours) finish_error(err, false);
            else finish_error(init_error_, true);
            return;
        }
        outcome_.protocol_version = version;
        send_request({{"io.modelcontextprotocol/protocolVersion", version},
                      {"io.modelcontextprotocol/clientCapabilities", json::object()},
                      {"io.modelcontextprotocol/clientInfo", {{"name", kClientName}, {"version", kClientVersion}}}});
        return;
    }
    if (id == 2 && phase_ == Phase::request) {
        if (is_error) finish_error(err, !ours);
        else finish_ok(msg["result"]);
    }
}

}  // namespace mcpwarden
