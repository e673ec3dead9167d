// SPDX-License-Identifier: Apache-2.0
// `mcpwarden agent`: a long-running root process that runs sandboxes for unprivileged clients
// over a Unix socket (protocol: agent_protocol.h, docs/api.md).
//
// One thread (serve()) owns the socket, the connections, admission control and the sandbox
// registry; each admitted sandbox runs Sandbox::run on a thread of its own (hosted mode: no
// parent-death signal, so a sandbox outlives an agent crash with its pinned BPF links). Sandbox
// threads talk back only through post(); the serving thread talks to a sandbox thread only
// through its control eventfd.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "agent_admission.h"
#include "agent_config.h"
#include "agent_protocol.h"
#include "event_loop.h"
#include "fd.h"
#include "sandbox.h"

namespace mcpwarden {

class EgressExtension;
class Attachment;
class SharedEventRing;

// Names of the agent's sandboxes: make_sandbox_name() with an "-a" suffix, a form no run's
// sweep judges (sandbox_owner_alive), so a crash of the agent leaves them to the next agent,
// which adopts those with a record and removes the others (Agent::recover).
std::string agent_sandbox_name();

// The default logger writes one JSON object per line: time (UTC), level, pid, msg.
void use_json_logs();

// Writes a file of the agent's state only root may read (0600), replaced whole; false on failure.
bool write_private_file(const std::string& path, const std::string& text);

class Agent {
public:
    using Clock = std::chrono::steady_clock;

    // One client connection.
    struct Conn {
        std::uint64_t id = 0;
        UniqueFd fd;
        PeerIdentity peer;
        std::string in;                 // bytes read, not yet a whole line
        std::uint64_t in_base = 0;      // stream offset of in[0]
        std::deque<std::pair<std::uint64_t, std::vector<UniqueFd>>> fd_batches;  // by stream offset
        bool skipping = false;          // discarding the rest of an oversized line
        struct Out {
            std::string bytes;
            std::vector<UniqueFd> fds;  // sent with the first byte
            std::size_t off = 0;
        };
        std::deque<Out> out;
        std::size_t out_bytes = 0;      // of `out`, not yet sent (capped: kMaxQueuedOutput)
        std::uint32_t interest = 0;     // the epoll events watched now
        // read_eof: no more input is read. closing: closed once the answers are sent and the
        // sandboxes it created ended (a half-closed client still reads its reports); with
        // `drop` (refused for good, or the peer is gone) as soon as the answers are sent.
        bool read_eof = false, closing = false, drop = false;
        bool input_paused = false;      // replies over the cap: no reading until they drain
        std::uint64_t events_dropped = 0;  // events not queued over the cap, told in the next one
        std::set<std::uint64_t> owned;  // tickets of sandboxes this connection created
        bool events = false;            // subscribed to events
        nlohmann::json events_id;
        std::string events_sandbox;     // "" = every sandbox the peer may see
        // Since when nothing keeps it open: set by a whole request and by the end of its last
        // sandbox (config limits.idle_timeout).
        std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
    };

    // One sandbox, from its admission request to its report.
    struct Record {
        enum class State { queued, starting, running, ended };
        std::uint64_t ticket = 0;
        std::string name;  // known once its cgroup exists
        std::string policy;
        State state = State::queued;
        uid_t owner_uid = 0;
        pid_t owner_pid = 0;
        gid_t owner_gid = 0;
        std::vector<gid_t> owner_groups;  // the client's groups: its command is looked up as it
        std::uint64_t conn = 0;  // the creating connection (0 once it went away)
        nlohmann::json request_id;
        bool keep = false;
        bool is_call = false;
        std::optional<ApiCall> call;
        RunOptions options;
        UniqueFd stdio[3];           // the server's stdio (ours to close when it ends)
        std::vector<UniqueFd> returned;  // stdio "return": the client's ends, sent when started
        pid_t pid = 0;
        std::vector<std::string> cgroup_paths;
        std::chrono::system_clock::time_point created_at = std::chrono::system_clock::now();
        Clock::time_point created = Clock::now(), started{};
        std::map<std::string, std::uint64_t> denials;  // by audit event kind
        // Kill requests reach the sandbox thread through these.
        std::atomic<int> kill_signal{0};
        UniqueFd control;  // eventfd
        // Its egress binding (set on the serving thread once the sandbox runs): live reloads.
        std::shared_ptr<EgressExtension> egress;
        UniqueFd pidfd;        // adopted: the server's main process
    };

    // An op handler: answers through reply()/reply_error() (now, or later for create/call).
    using Handler = std::function<void(Conn&, ApiRequest&, std::vector<UniqueFd>& fds)>;

    explicit Agent(AgentConfig config);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

    // At start, before serving: what a previous agent left behind (sandbox cgroups, pins,
    // workspaces, records in <state_dir>/agent/sandboxes). Today it sweeps what has no live
    // owner; re-adoption belongs here.
    void recover();
    // Listens and serves until SIGTERM or SIGINT; then ends every sandbox and returns 0.
    int serve();

    // The dispatch table (create, call, list, inspect, kill, events, reload, attach and detach
    // are registered by the constructor). Requests are checked against api_ops() before a
    // handler sees them.
    void add_op(const std::string& name, Handler handler) { ops_[name] = std::move(handler); }

    // Runs `fn` on the serving thread (from any thread).
    void post(std::function<void()> fn);

    void reply(Conn& conn, const nlohmann::json& message, std::vector<UniqueFd> fds = {});
    void reply_error(Conn& conn, const nlohmann::json& id, const Error& e) { reply(conn, api_error(id, e)); }
    // An event for every subscriber allowed to see it (owner_uid: -1 = root only).
    void broadcast(nlohmann::json event, const std::string& sandbox, long owner_uid);
    // A refusal by configuration: logged and an audit event.
    void audit_forbidden(const Conn& conn, const std::string& op, const std::string& policy, const std::string& why);

    const AgentConfig& config() const { return config_; }
    std::map<std::uint64_t, std::shared_ptr<Record>>& records() { return records_; }
    std::shared_ptr<Record> find_visible(const Conn& conn, const std::string& name);
    std::string record_path(const std::string& name) const;  // <state_dir>/agent/sandboxes/NAME.json

private:
    void listen_socket();
    void on_accept();
    void on_readable(Conn& conn);
    bool read_once(Conn& conn);
    void on_writable(Conn& conn);
    void flush(Conn& conn);
    void update_interest(Conn& conn);
    void close_if_done(Conn& conn);
    void handle_line(Conn& conn, std::string_view line, std::vector<UniqueFd>& fds);
    void close_conn(std::uint64_t id);
    void drain_mailbox();
    void arm_queue_timer();
    void on_queue_timer();
    void on_idle_timer();
    // Answers `message` to a connection not taken in, and closes it (unlisted peer, over a cap).
    void refuse_connection(Conn& conn, const Error& why);

    void op_create(Conn& conn, ApiRequest& r, std::vector<UniqueFd>& fds, bool is_call);
    void op_list(Conn& conn, ApiRequest& r);
    void op_inspect(Conn& conn, ApiRequest& r);
    void op_kill(Conn& conn, ApiRequest& r);
    void op_events(Conn& conn, ApiRequest& r);

    std::shared_ptr<const Policy> policy(const std::string& name);
    void start(const std::shared_ptr<Record>& rec);
    void run_thread(std::shared_ptr<Record> rec);
    void on_started(const std::shared_ptr<Record>& rec);
    void on_ended(const std::shared_ptr<Record>& rec, nlohmann::json final_message, const std::string& status);
    void write_record(const Record& rec);
    nlohmann::json describe(const Record& rec, bool usage) const;
    void on_audit_line(const std::string& line);

    // Live policy updates and crash recovery (agent_durability.cpp).
    void op_reload(Conn& conn, ApiRequest& r);
    nlohmann::json reload_policies(const std::string& only);
    void recover_sandboxes();
    void adopt_sandbox(const nlohmann::json& record);
    void signal_adopted(const std::shared_ptr<Record>& rec);
    void end_adopted(const std::shared_ptr<Record>& rec);
    // Cgroup-scoped deployments held by the agent, by cgroup id (records in
    // <state_dir>/agent/attachments).
    void op_attach(Conn& conn, ApiRequest& r);
    void op_detach(Conn& conn, ApiRequest& r);
    void recover_attachments();
    void sweep_gone_attachments();  // on the idle timer: attachments whose cgroup was removed
    std::map<std::uint64_t, std::shared_ptr<Attachment>> attachments_;
    Attachment* attachment_named(const std::string& name) const;  // nullptr if none
    void forget_attachment_metrics(const std::string& name);
    void finish_admissions(const std::vector<Admission::Ticket>& tickets);

    // Prometheus text metrics (config `metrics`).
    struct Metrics {
        std::uint64_t created = 0, oom_kills = 0, timeouts = 0, events_lost = 0;
        std::uint64_t dns_answered = 0, dns_refused = 0;
        std::map<std::string, std::uint64_t> errors;  // error answers by kind
        std::map<std::string, std::uint64_t> ends;    // sandbox ends by status
        std::map<std::pair<std::string, std::string>, std::uint64_t> denials;  // (policy, event)
        // Of attachments, by (attachment name, event); dropped with the attachment.
        std::map<std::pair<std::string, std::string>, std::uint64_t> attachment_denials;
    };
    void metrics_listen();
    void on_metrics_accept();
    std::string metrics_text() const;
    void count_end(const nlohmann::json& final_message, const std::string& status);

    AgentConfig config_;
    EventLoop loop_;
    Metrics metrics_;
    UniqueFd metrics_listen_;
    std::map<int, UniqueFd> metrics_conns_;
    UniqueFd listen_, signals_, mailbox_fd_, queue_timer_, idle_timer_;
    std::map<uid_t, std::size_t> conns_per_uid_;
    UniqueFd spare_fd_;  // given up to accept (and refuse) a connection when out of descriptors
    std::mutex mailbox_mutex_;
    std::vector<std::function<void()>> mailbox_;
    std::map<std::string, Handler> ops_;
    std::map<std::uint64_t, std::unique_ptr<Conn>> conns_;
    // The audit ring buffers every hosted sandbox writes into (claimed by recover(); declared
    // before records_ so it outlives their egress bindings).
    std::unique_ptr<SharedEventRing> shared_events_;
    void open_shared_events();
    std::map<std::uint64_t, std::shared_ptr<Record>> records_;
    std::map<std::string, std::uint64_t> by_name_;
    Admission admission_;
    std::shared_ptr<spdlog::logger> audit_;
    std::uint64_t next_conn_ = 1, next_ticket_ = 1;
    std::atomic<int> threads_{0};
    bool stopping_ = false;
    sigset_t old_mask_{};
};

}  // namespace mcpwarden
