// What confines the server beyond its cgroup and the egress programs (docs/security.md):
//
// - a seccomp filter, installed just before execve, for what the cgroup hooks never see:
//   socket()/socketpair() of families other than AF_UNIX, AF_INET, AF_INET6 and
//   AF_NETLINK/NETLINK_ROUTE (AF_PACKET, AF_VSOCK, other netlink families, ... fail with
//   EPERM); io_uring (its IORING_OP_SOCKET creates sockets behind seccomp's back); bpf();
//   ptrace, process_vm_readv/writev and pidfd_getfd (another process of the same user could
//   otherwise be made to connect, or hand over its sockets). System calls of another ABI
//   (i386 int 0x80, x32) kill the process.
// - the private filesystem view of fs_view.h (among others, /run is an empty tmpfs there: the
//   sockets of the host's daemons (D-Bus, systemd-resolved, nscd, docker, ...) live there, and a
//   daemon asked over AF_UNIX would make network requests for the sandbox).
// - on Linux 6.12+ (Landlock ABI 6), a Landlock domain that scopes abstract Unix sockets: the
//   sandbox reaches only those made inside it (they belong to the network namespace, which the
//   sandbox shares with the host, so /run cannot hide them).
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
    bool landlock_abstract_unix = false;
    // Points `spec` into this object: keep it alive until spawn_child returned.
    void apply(ChildSpec& spec) const;
};

// The seccomp program of every sandbox (native x86_64 ABI). Throws Error(sandbox_unavailable).
std::vector<sock_filter> build_seccomp_filter();

// The kernel's Landlock ABI version (0: none).
int landlock_abi();

std::unique_ptr<Confinement> make_confinement();

}  // namespace mcpwarden
