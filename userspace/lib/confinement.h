// SPDX-License-Identifier: Apache-2.0
// What confines the server beyond its cgroup and the egress programs (docs/security.md):
//
// - a seccomp filter, installed just before execve, for what the cgroup hooks never see:
//   socket()/socketpair() of families other than AF_UNIX, AF_INET, AF_INET6 and
//   AF_NETLINK/NETLINK_ROUTE (AF_PACKET, AF_VSOCK, other netlink families, ... fail with
//   EPERM); io_uring (its IORING_OP_SOCKET creates sockets behind seccomp's back); bpf();
//   ptrace, process_vm_readv/writev and pidfd_getfd (another process of the same user could
//   otherwise be made to connect, or hand over its sockets); the groups of system calls no MCP
//   server needs (module, mount, reboot, swap, clock, raw I/O, keyring, perf, userfaultfd,
//   open_by_handle_at, obsolete ABIs), TIOCSTI/TIOCLINUX, and new user namespaces unless the
//   policy allows them (clone3 fails with ENOSYS then, so libcs fall back to clone). All fail
//   with EPERM rather than killing. System calls of another ABI (i386 int 0x80, x32) kill the
//   process.
// - the private filesystem view of fs_view.h (among others, /run is an empty tmpfs there: the
//   sockets of the host's daemons (D-Bus, systemd-resolved, nscd, docker, ...) live there, and a
//   daemon asked over AF_UNIX would make network requests for the sandbox).
// - a Landlock domain of the server's own wherever the kernel has Landlock ABI 2 (Linux 5.19)
//   or later: ptrace, /proc/PID/mem and the like of any process outside it fail. From ABI 6
//   (Linux 6.12) it also scopes signals and abstract Unix sockets: the sandbox reaches only
//   those made inside it (they belong to the network namespace, which the sandbox shares with
//   the host, so /run cannot hide them). Its filesystem rules grant everything: the mount
//   view is the filesystem boundary. ABI 1 (5.13-5.18) is not used: its domains refuse every
//   rename across directories. Without Landlock the sandbox runs (the PID namespace, uids and
//   the seccomp filter keep other processes out of reach) and the report says so.
// If any of them cannot be set up, the server does not start (fail closed).
#pragma once

#include <linux/filter.h>

#include <memory>
#include <string>
#include <vector>

#include "process.h"

namespace mcpwarden {

struct Confinement {
    std::vector<sock_filter> filter;
    sock_fprog program{};
    int landlock_abi = 0;  // what the server's domain is built for; 0 = none
    // Points `spec` into this object: keep it alive until spawn_child returned.
    void apply(ChildSpec& spec) const;
};

struct SeccompOptions {
    // clone/unshare with CLONE_NEWUSER and clone3 stay allowed (the policy's
    // allow_user_namespaces: for servers that run a browser with its own namespace sandbox).
    bool allow_user_namespaces = false;
};

// The seccomp program of every sandbox (native x86_64 ABI). Throws Error(sandbox_unavailable).
std::vector<sock_filter> build_seccomp_filter(const SeccompOptions& options = {});

// The kernel's Landlock ABI version (0: none).
int landlock_abi();

// What the Landlock domain of a sandbox covers on this kernel, for the report:
// "ptrace, signal, abstract-unix", "ptrace" or "none (...why...)".
std::string landlock_scope(int abi);

std::unique_ptr<Confinement> make_confinement(const SeccompOptions& seccomp = {});

}  // namespace mcpwarden
