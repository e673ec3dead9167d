// SPDX-License-Identifier: Apache-2.0
// Cgroups of a sandbox: one directory on the unified (v2) hierarchy, where BPF attaches and
// the child is cloned into, plus v1 memory/pids/cpu directories on hybrid hosts.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fd.h"

namespace mcpwarden {

enum class CgroupVersion { none, v1, v2 };
std::string_view to_string(CgroupVersion v);

// Where each hierarchy is mounted and which cgroup we live in, read from /proc/self/mountinfo
// and /proc/self/cgroup.
struct CgroupLayout {
    std::string unified_mount;  // "" when no cgroup2 mount exists
    std::string v1_memory_mount, v1_pids_mount, v1_cpu_mount;
    std::string own_unified, own_memory, own_pids, own_cpu;  // cgroup paths ("/a/b")
    // Root of each mount inside its hierarchy ("/" unless a cgroup namespace or bind mount).
    std::string unified_root = "/", memory_root = "/", pids_root = "/", cpu_root = "/";

    static CgroupLayout detect();
    // For tests: parse given texts instead of /proc.
    static CgroupLayout parse(const std::string& mountinfo, const std::string& proc_cgroup);
};

// What a sandbox asks of its cgroups.
struct CgroupLimits {
    std::optional<std::uint64_t> memory_bytes;
    std::optional<std::uint64_t> pids;
    std::optional<std::uint32_t> cpu_millicores;
};

// Which hierarchy enforces each limit (none = not enforceable here).
struct CgroupPlan {
    CgroupVersion memory = CgroupVersion::none;
    CgroupVersion pids = CgroupVersion::none;
    CgroupVersion cpu = CgroupVersion::none;
    std::string unified_base;  // directory under which "mcpwarden/<name>" is made
    std::string memory_base, pids_base, cpu_base;
};

// Decides where limits go; throws Error(sandbox_unavailable) when the unified hierarchy is
// missing. Missing controllers are left as none; the caller decides (fail closed or degrade).
CgroupPlan plan_cgroups(const CgroupLayout& layout, const std::string& cgroup_root);

struct CgroupCounters {
    std::uint64_t oom_kills = 0;
    std::uint64_t pids_max_hits = 0;
    std::optional<std::uint64_t> memory_peak;
};

// The cgroup directories of one sandbox. Removing them (after killing whatever is inside)
// happens in the destructor, on every path.
class SandboxCgroup {
public:
    // Creates the directories and applies the limits. The name must be unique (see
    // make_sandbox_name). Throws Error(sandbox_unavailable) with what to do on failure.
    SandboxCgroup(const CgroupPlan& plan, const std::string& name, const CgroupLimits& limits);
    ~SandboxCgroup();
    SandboxCgroup(const SandboxCgroup&) = delete;
    SandboxCgroup& operator=(const SandboxCgroup&) = delete;

    const std::string& name() const { return name_; }
    const std::string& unified_path() const { return unified_; }
    std::uint64_t unified_id() const { return unified_id_; }  // cgroup id (inode number)
    int unified_fd() const { return unified_fd_.get(); }      // for CLONE_INTO_CGROUP
    // Open cgroup.procs files of the v1 directories: the child writes "0" into each before
    // it drops privileges.
    const std::vector<int> v1_procs_fds() const;
    std::vector<std::string> paths() const;

    CgroupCounters counters() const;

    // Kernel notifications that a limit counter of counters() may have changed, for an epoll
    // loop, so that a limited sandbox need not poll. v2 memory.events and pids.events are
    // kernfs files the kernel notifies (cgroup_file_notify: poll reports EPOLLPRI once the
    // file changed since it was last read); v1 memory.oom_control signals an eventfd
    // registered through cgroup.event_control at each OOM. v1 pids.events is not notified by
    // every kernel (6.18 does not): it is still watched, and polled slowly.
    struct LimitWatch {
        UniqueFd fd;
        std::uint32_t events = 0;  // EPOLLPRI (a notified file) or EPOLLIN (an eventfd)
        // The v1 OOM eventfd. It fires when an OOM begins, before its kill is counted in
        // memory.oom_control: after it the counters must be read again for a while.
        bool eventfd = false;
        // Consumes the notification (reads the eventfd, or the file again from the start),
        // so that level-triggered epoll reports the next change only.
        void rearm() const;
    };
    struct LimitWatches {
        std::vector<LimitWatch> watches;
        // Counters nothing notifies (v1 pids, or a notification that could not be set up):
        // the caller must still poll counters() every `poll`.
        std::optional<std::chrono::milliseconds> poll;
    };
    LimitWatches watch_limits() const;

    bool populated() const;
    // Kills every process in the sandbox (cgroup.kill, or SIGKILL to each on old kernels).
    void kill();
    // Waits until no process is left; false on timeout.
    bool wait_empty(std::chrono::milliseconds timeout);
    // Kill, wait, remove. Idempotent; reports what could not be removed.
    void destroy();

private:
    std::string name_;
    std::string unified_, memory_, pids_, cpu_;
    CgroupVersion memory_ver_ = CgroupVersion::none, pids_ver_ = CgroupVersion::none;
    UniqueFd unified_fd_;
    std::vector<UniqueFd> v1_procs_;
    std::uint64_t unified_id_ = 0;
    bool destroyed_ = false;
};

// "s-<owner pid>-<owner start time>-<seq>": lets a later run tell whether the owner is gone.
std::string make_sandbox_name();

// Whether the process that created sandbox `name` (make_sandbox_name) still runs. Names of
// another form are reported alive (never swept).
bool sandbox_owner_alive(const std::string& name);

// Removes sandbox cgroups whose owner process is gone (killing anything left inside).
// Never touches one whose owner still runs. Returns how many were removed.
int sweep_stale_sandboxes(const CgroupPlan& plan);

// Removes the sandbox cgroups (under every base of `plan`) whose name `stale` accepts, killing
// anything left inside. Returns how many were removed.
int sweep_sandboxes(const CgroupPlan& plan, const std::function<bool(const std::string& name)>& stale);

// The "mcpwarden" directory under a base; sandboxes live inside it.
std::string sandbox_parent(const std::string& base);

// Removes one hierarchy's directory of a sandbox (waiting out EBUSY while its last processes
// exit), then its "mcpwarden" parent if no other sandbox is left in it. False when the
// sandbox's directory stays.
bool remove_sandbox_cgroup(const std::string& path);

}  // namespace mcpwarden
