// SPDX-License-Identifier: Apache-2.0
// MCP-aware stdio for a sandboxed server: McpProxy relays a real client (mcpwarden's own stdin
// and stdout, `run --mcp`) and McpCall is a one-request client of its own (`mcpwarden call`).
// Both run the server's side the same way (McpChannel): an McpSession between the two,
// framing with bounded buffers and backpressure, the server's stderr always drained, per-call
// deadlines on a timerfd, and the MCP stdio shutdown (close stdin, wait, SIGTERM, wait, kill).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "event_loop.h"
#include "fd.h"
#include "mcp_framer.h"
#include "mcp_session.h"
#include "sandbox.h"

namespace mcpwarden {

// The shutdown waits (the MCP stdio convention; both official SDKs wait 2 s at each step).
inline constexpr std::chrono::milliseconds kShutdownStdinWait{2000};  // after closing stdin
inline constexpr std::chrono::milliseconds kShutdownTermWait{2000};   // after SIGTERM, then kill
// A server that has not answered its handshake this long after the policy first refused it
// something (a DNS name, a destination) is taken to be stuck on it: `npx` retries a refused
// registry for over a minute, long after every client gave up. The handshake is answered with
// what was refused instead (see McpChannel::on_refusal_tick).
inline constexpr std::chrono::milliseconds kRefusalGrace{3000};
// The error that handshake gets: what was refused (`refused`), the egress.allow entries that
// would allow it (`rules`, the policy's keys), the counts. Exposed for tests.
Error handshake_refused(const std::vector<Refusal>& refused, std::uint64_t dns_refused, std::uint64_t egress_denied);

// Newline-terminated messages to a non-blocking fd; queues what the fd does not take at once.
class MessageQueue {
public:
    MessageQueue(EventLoop& loop, UniqueFd fd, std::function<void()> on_progress = {});
    ~MessageQueue();
    MessageQueue(const MessageQueue&) = delete;
    MessageQueue& operator=(const MessageQueue&) = delete;

    void push(std::string_view message);  // appends "\n"
    std::size_t pending_bytes() const { return buf_.size() - off_; }
    bool broken() const { return broken_; }  // the reader went away; pushes are dropped
    bool closed() const { return !fd_; }
    void close_when_drained();
    void close();
    // Blocks (poll) until everything is written or `max` passed; true when drained.
    bool flush_for(std::chrono::milliseconds max);
    void detach();  // stop watching (before the loop goes away)

private:
    bool write_some();
    void watch(bool on);

    EventLoop& loop_;
    UniqueFd fd_;
    std::function<void()> on_progress_;
    std::string buf_;
    std::size_t off_ = 0;
    bool watching_ = false, broken_ = false, close_when_drained_ = false;
};

class McpChannel : public SandboxExtension {
public:
    explicit McpChannel(McpConfig config);
    ~McpChannel() override;

    bool wants_stdio_pipes() const override { return true; }
    void after_spawn(Sandbox& sandbox, int child_stdin, int child_stdout, int child_stderr) override;
    bool draining() const override;
    void on_end(Sandbox& sandbox, RunReport& report) override;

    const McpStats& stats() const { return session_->stats(); }
    // The MCP stdio shutdown had begun (the client closed stdin, or `call` had its answer)
    // when the sandbox ended: a client's SIGTERM to mcpwarden then is that sequence's next step
    // (the SDKs send it 2 s after closing stdin), not an interruption.
    bool ended_by_shutdown() const { return shutdown_phase_ > 0; }

protected:
    using Clock = McpSession::Clock;
    // The client side, implemented by McpProxy (a real client) and McpCall (our own).
    virtual void client_start() = 0;
    virtual void deliver(std::string_view message) = 0;  // a message for the client
    virtual bool client_busy() const { return false; }     // client output over its bound
    virtual bool client_draining() const { return false; }
    virtual void client_update() {}                        // after every event
    virtual void client_end() {}                           // the sandbox ended; flush

    void from_client(std::string_view line);
    void from_client_oversized(const LineFramer::Oversized& o);
    std::size_t server_backlog() const;
    // Ends the session the MCP stdio way: close the server's stdin, wait kShutdownStdinWait,
    // SIGTERM every process of the sandbox, wait kShutdownTermWait, kill the sandbox.
    void begin_shutdown();
    bool shutting_down() const { return shutdown_phase_ > 0; }
    void update();  // read interest and the deadline timer, after every event

    McpSession& session() { return *session_; }
    Sandbox* sandbox_ = nullptr;
    EventLoop* loop_ = nullptr;
    bool ending_ = false;  // on_end is answering what is pending

    static constexpr std::size_t kHighWater = 1u << 20;  // queued bytes before reading stops

private:
    void on_server_readable();
    void on_stderr_readable();
    void flush_stderr();
    void on_deadline();
    void on_refusal_tick();
    void on_shutdown_timer();
    void server_eof();
    void signal_sandbox(int sig);

    McpConfig config_;
    std::unique_ptr<McpSession> session_;
    std::unique_ptr<MessageQueue> server_in_;
    UniqueFd server_out_, server_err_, my_err_;
    LineFramer server_framer_;
    std::vector<char> read_buf_;
    bool server_out_watched_ = false, server_out_eof_ = false, stderr_eof_ = false, stderr_watched_ = false;
    std::string stderr_queue_;
    std::uint64_t stderr_dropped_ = 0;
    UniqueFd deadline_timer_, shutdown_timer_, refusal_timer_;
    std::optional<Clock::time_point> first_refusal_;
    std::optional<Clock::time_point> armed_;
    int shutdown_phase_ = 0;
    bool cleaned_ = false;
    void cleanup();
};

// `run --mcp`: mcpwarden's stdin and stdout are the client.
class McpProxy : public McpChannel {
public:
    explicit McpProxy(McpConfig config);
    ~McpProxy() override;

private:
    void client_start() override;
    void deliver(std::string_view message) override;
    bool client_busy() const override;
    bool client_draining() const override;
    void client_update() override;
    void client_end() override;
    void on_client_readable();

    UniqueFd in_, ready_;  // ready_: an always-readable eventfd when stdin cannot be polled
    int in_watch_ = -1;
    bool in_eof_ = false;
    int in_flags_ = -1, out_flags_ = -1;
    int client_in_ = 0, client_out_ = 1;
    std::unique_ptr<MessageQueue> out_;
    LineFramer client_framer_;
    std::vector<char> read_buf_;
};

// What `mcpwarden call` asks, and what it got.
struct CallRequest {
    std::string method;  // tools/call, tools/list, resources/read, prompts/get
    nlohmann::json params = nlohmann::json::object();
};

struct CallOutcome {
    bool done = false;
    bool ok = false;
    nlohmann::json result;  // ok: the result object (with mcpwarden's _meta)
    ErrorKind kind = ErrorKind::internal;  // !ok
    nlohmann::json error;   // !ok: {kind, message, code, figures...}
    std::string protocol_version;
    // The one JSON object `call` prints: the result, or {"error": {...}}.
    nlohmann::json to_json() const;
    int exit_code() const;
};

// `mcpwarden call`: handshake (initialize, or the stateless 2026-07-28 protocol when the
// server only speaks that), one request, then shutdown.
class McpCall : public McpChannel {
public:
    McpCall(McpConfig config, CallRequest request);
    const CallOutcome& outcome() const { return outcome_; }

private:
    void client_start() override;
    void deliver(std::string_view message) override;
    void client_update() override;
    void client_end() override;
    void send(const nlohmann::json& message);
    void send_request(const nlohmann::json& meta);
    void finish_ok(const nlohmann::json& result);
    void finish_error(const nlohmann::json& error_object, bool from_server);
    void handle(const nlohmann::json& message);

    CallRequest request_;
    CallOutcome outcome_;
    std::deque<std::string> inbox_;
    enum class Phase { initialize, discover, request, done } phase_ = Phase::initialize;
    nlohmann::json init_error_;
};

}  // namespace mcpwarden
