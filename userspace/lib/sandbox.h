// SPDX-License-Identifier: Apache-2.0
// One sandboxed run: cgroups, workspace, egress binding (by extensions), the child, the watch
// loop, and the report. Everything it creates is removed on every path out of run().
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cgroup.h"
#include "event_loop.h"
#include "identity.h"
#include "policy.h"
#include "process.h"

namespace mcpwarden {

struct RunOptions {
    Policy policy;
    Limits limits;  // effective limits (policy merged with command-line flags)
    std::vector<std::string> command;
    std::string user;                   // a fixed account; empty = the policy's, else the pair's own uid
    std::vector<std::string> env_args;  // --env NAME or NAME=VALUE
    std::string state_dir = "/var/lib/mcpwarden";
    std::string cgroup_root;            // empty = the cgroup mcpwarden runs in
    bool allow_degraded = false;
    // Stdio of the server when it is not relayed: -1 = mcpwarden's own 0/1/2 (the CLI); the
    // agent passes a client's fds. Relays (MCP, inet sockets) read and write these too.
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
    // Where the policy's env.pass and a bare --env NAME read values: nullopt = our environment;
    // the agent passes the client's.
    std::optional<std::map<std::string, std::string>> source_env;
    // Hosted by the agent: one run among many threads of a long-lived process. Signals are the
    // host's (no signalfd here), the server is not tied to the spawning thread's life (no
    // parent-death signal: it outlives an agent crash), only the run's own child is reaped, and
    // stale sandboxes are swept by the host, not by each run.
    bool hosted = false;
    std::string name;  // the sandbox's name; empty = make_sandbox_name()
    // The agent's client this sandbox runs for: its persistent cache is that client's own
    // (Workspace); nullopt = a standalone run.
    std::optional<uid_t> client_uid;
    // Where the pair's own uid comes from (identity.h); nullopt = configured_identity_range.
    std::optional<UidRange> uid_range;
    // The fd standing for the server's stdio `i` (0, 1, 2) on our side.
    int stdio_fd(int i) const {
        int fd = i == 0 ? stdin_fd : i == 1 ? stdout_fd : stderr_fd;
        return fd >= 0 ? fd : i;
    }
};

struct RunReport {
    std::string status;  // exited | signaled | timeout | memory_exceeded | pids_exceeded | interrupted
    std::optional<int> exit_code;
    std::optional<int> signal;
    std::chrono::milliseconds duration{0};
    std::optional<std::uint64_t> peak_memory;
    std::uint64_t oom_kills = 0;
    std::uint64_t pids_max_hits = 0;
    bool degraded = false;
    std::vector<std::string> degraded_reasons;
    Limits limits;
    CgroupPlan plan;
    std::string sandbox;
    std::string policy;
    std::string user;  // "mcpwarden-<uid>" for the pair's own uid, else the fixed account's name
    uid_t uid = 0;
    nlohmann::json extra = nlohmann::json::object();  // filled by extensions (egress_denied, ...)

    nlohmann::json to_json() const;
    int process_exit_code() const;
};

class Sandbox;

// One thing the policy refused: for people, and the rule that would allow it, so that the
// error a stuck server's client gets can say what to add.
struct Refusal {
    std::string what;     // "name" (refused by DNS), "name (address:port/tcp)" or "address:port/tcp" (denied)
    nlohmann::json rule;  // the egress.allow entry that allows it, in the policy's keys; null if none would
};

// How other parts plug into a run (egress enforcement, the MCP proxy). Each hook may throw
// Error to refuse the run; everything created so far is then removed.
class SandboxExtension {
public:
    virtual ~SandboxExtension() = default;
    // Cgroups exist, the child does not: bind the policy to the cgroup (attach programs).
    virtual void before_spawn(Sandbox&) {}
    // Wants the child's stdio as pipes (the MCP proxy) instead of inheriting mcpwarden's.
    virtual bool wants_stdio_pipes() const { return false; }
    // The child runs. With pipes, fds are mcpwarden's ends (-1 otherwise); the extension owns
    // and relays them.
    virtual void after_spawn(Sandbox&, int child_stdin, int child_stdout, int child_stderr) {
        (void)child_stdin; (void)child_stdout; (void)child_stderr;
    }
    // After the child exited: true while the extension still has output to deliver.
    virtual bool draining() const { return false; }
    // The sandbox ended (status known, processes gone, cgroups not yet removed).
    virtual void on_end(Sandbox&, RunReport&) {}
    // Egress denials since the start, for per-call accounting (the egress extension counts).
    virtual std::uint64_t egress_denied() const { return 0; }
    // DNS queries the sandbox's resolver refused since the start (the egress extension counts).
    virtual std::uint64_t dns_refused() const { return 0; }
    // What the policy refused so far: names refused by DNS, destinations denied, each once,
    // the first few only.
    virtual std::vector<Refusal> refused_destinations() const { return {}; }
};

class Sandbox {
public:
    explicit Sandbox(RunOptions options);
    ~Sandbox();

    void add_extension(std::shared_ptr<SandboxExtension> ext) { extensions_.push_back(std::move(ext)); }

    // Runs the command to the end. Throws Error before the child starts when something cannot
    // be enforced (nothing is left behind); after that, the outcome is in the report.
    RunReport run();

    EventLoop& loop() { return loop_; }
    SandboxCgroup& cgroup() { return *cgroup_; }
    const RunOptions& options() const { return options_; }
    pid_t child_pid() const { return child_.pid; }
    // Ends the sandbox now (kills every process); the report says `status`.
    void terminate(const std::string& status);
    // Ends the sandbox as signal `signal` to mcpwarden would: status `interrupted`, the report's
    // signal is `signal` (the exit code 128+signal).
    void interrupt(int signal);
    std::uint64_t egress_denied() const;
    std::uint64_t dns_refused() const;
    std::vector<Refusal> refused_destinations() const;

private:
    void check_enforceable(const CgroupPlan& plan, DegradedLimits& degraded, RunReport& report);
    std::vector<std::string> build_env(const UserIdentity& user, const class Workspace& ws) const;

    RunOptions options_;
    EventLoop loop_;
    std::vector<std::shared_ptr<SandboxExtension>> extensions_;
    std::unique_ptr<SandboxCgroup> cgroup_;
    Child child_;
    std::string forced_status_;
    std::optional<int> interrupted_by_;
};

// The sandbox PATH.
inline constexpr const char* kSandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

}  // namespace mcpwarden
