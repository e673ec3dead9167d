// SPDX-License-Identifier: Apache-2.0
// Starting the server process inside its sandbox cgroup, already unprivileged.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "fd.h"

namespace mcpwarden {

struct FsView;

struct UserIdentity {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

// A fixed account (`user:`, `--user`): a name or a numeric uid, checked by
// check_fixed_account (identity.h): root, -1, login accounts and homes under /home are refused
// with Error(usage).
UserIdentity resolve_user(const std::string& name);

// rlimits applied in the child when a cgroup limit is unavailable and --allow-degraded was given.
struct DegradedLimits {
    std::optional<std::uint64_t> address_space;
    std::optional<std::uint64_t> nproc;
};

struct ChildSpec {
    std::string executable;          // absolute path, already resolved
    std::vector<std::string> argv;   // argv[0] as the user wrote it
    std::vector<std::string> env;    // "NAME=value"
    std::string workdir;
    UserIdentity user;
    int cgroup_fd = -1;              // unified cgroup directory (CLONE_INTO_CGROUP)
    std::vector<int> v1_procs_fds;   // the child writes "0" to each before dropping privileges
    DegradedLimits degraded;
    std::uint64_t open_files = 0;    // RLIMIT_NOFILE (soft and hard) of the server; 0 = inherited
    // Stdio of the child: -1 = inherit mcpwarden's own fd, otherwise dup2'ed onto 0/1/2.
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
    // End the sandbox when mcpwarden ends (the CLI): its init watches the status pipe, whose
    // only reader is mcpwarden. The agent clears it: its sandboxes outlive the spawning thread
    // and even the agent itself.
    bool parent_death_kill = true;
    // Installed last, just before execve (seccomp, issue 7). Must be async-signal-safe.
    const void* seccomp_program = nullptr;  // struct sock_fprog*
    // The private filesystem view (fs_view.h), set up in the child's own mount namespace.
    const FsView* fs_view = nullptr;
    // The kernel's Landlock ABI (0: none). At 2 and above the server gets a Landlock domain of
    // its own (ptrace scoping); at 6 and above it also scopes signals and abstract Unix sockets.
    int landlock_abi = 0;
};

struct Child {
    pid_t pid = -1;      // the sandbox's init (PID 1 of its namespace), as mcpwarden sees it
    UniqueFd pidfd;      // of the init: readable when the sandbox ended
    UniqueFd status;     // non-blocking: the init writes the server's {si_code, si_status} here
};

// The server's own end as the init reported it, or, if it did not (the sandbox was killed),
// the init's.
siginfo_t child_exit_status(const Child& child, const siginfo_t& init_exit);

// mcpwarden-init, opened once per process (O_PATH): next to the running mcpwarden binary
// (the build tree), else in the libexec directory it was installed to. Throws
// Error(sandbox_unavailable) naming both places when it is in neither.
int init_program_fd();

// Resolves a command name against PATH (as the standard PATH of the sandbox); absolute or
// relative paths with a '/' are taken as they are. Throws Error(usage) when not found.
std::string resolve_executable(const std::string& command, const std::string& path_var);

// A process with a large descriptor table (the agent: a few dozen per sandbox) would copy all
// of it into every child and close it again at execve. This reserves `blocks` groups of low
// descriptor numbers, to be called while the table is still small: a spawn that gets a group
// moves the descriptors its child needs there, and the child keeps only the table below them
// (close_range with CLOSE_RANGE_UNSHARE). Spawns beyond `blocks` at once, and every spawn where
// the kernel or the architecture lacks this, copy the table as before. Returns the number of
// groups reserved.
int reserve_spawn_descriptors(int blocks);

// clone3(CLONE_INTO_CGROUP | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC): the
// child is in its cgroup and its namespaces before its first instruction. It is PID 1 there:
// it joins the v1 cgroups, sets up the mount view and mounts the namespace's own /proc, joins
// a new session keyring, then starts the server as PID 2 and becomes mcpwarden-init. The
// server calls setsid, drops every capability (bounding set included) and switches to the
// user, sets no_new_privs, enters its Landlock domain and seccomp filter, closes every fd
// except 0/1/2 and execs with a clean environment. Throws Error(sandbox_unavailable) if the
// kernel refuses, or Error(usage) if the command cannot be executed (errno from the child,
// reported through a close-on-exec pipe).
Child spawn_child(const ChildSpec& spec);

}  // namespace mcpwarden
