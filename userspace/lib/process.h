// Starting the server process inside its sandbox cgroup, already unprivileged.
#pragma once

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

// "nobody", "alice" or a numeric uid. Root is refused: a server running as root could leave
// its cgroup and detach its own egress programs.
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
    // Stdio of the child: -1 = inherit mcpwarden's own fd, otherwise dup2'ed onto 0/1/2.
    int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
    // SIGKILL the child when the thread that spawned it ends (the CLI). The agent clears it: its
    // sandboxes outlive the spawning thread and even the agent itself.
    bool parent_death_kill = true;
    // Installed last, just before execve (seccomp, issue 7). Must be async-signal-safe.
    const void* seccomp_program = nullptr;  // struct sock_fprog*
    // The private filesystem view (fs_view.h), set up in a mount namespace of the child's own.
    const FsView* fs_view = nullptr;
    // A Landlock domain scoping abstract Unix sockets (Linux 6.12+, confinement.h).
    bool landlock_abstract_unix = false;
};

struct Child {
    pid_t pid = -1;
    UniqueFd pidfd;
};

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

// clone3(CLONE_INTO_CGROUP | CLONE_PIDFD): the child is in its cgroup before its first
// instruction. Between clone and execve it joins the v1 cgroups, drops every capability
// (bounding set included) and switches to the user, sets no_new_privs and PDEATHSIG, closes
// every fd except 0/1/2 and execs with a clean environment. Throws Error(sandbox_unavailable)
// if the kernel refuses, or Error(usage) if the command cannot be executed (errno from the
// child, reported through a close-on-exec pipe).
Child spawn_child(const ChildSpec& spec);

}  // namespace mcpwarden
