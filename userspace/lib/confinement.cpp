// SPDX-License-Identifier: Apache-2.0
#include "confinement.h"

#include <linux/netlink.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "error.h"
#include "fd.h"

namespace mcpwarden {

namespace {

[[noreturn]] void fail(const std::string& what, int rc) {
    throw Error(ErrorKind::sandbox_unavailable,
                errno_text("cannot build the sandbox's seccomp filter (" + what + ")", -rc) +
                    "; refusing to run the server without it");
}

void check(int rc, const std::string& what) {
    if (rc < 0) fail(what, rc);
}

struct Ctx {
    scmp_filter_ctx ctx;
    ~Ctx() { seccomp_release(ctx); }
};

// The system-call groups no MCP server needs (docs/security.md, "The seccomp filter"), after
// systemd's SystemCallFilter=@system-service and Docker's default profile. Most need a
// capability the server does not hold; refusing them anyway takes the kernel code behind them
// out of reach (inside a user namespace a capability is easy to come by) and keeps a later
// mistake in the privilege drop from turning into a host compromise.
struct SyscallGroup {
    const char* name;
    std::initializer_list<const char*> calls;
};
const SyscallGroup kDeniedGroups[] = {
    {"debug", {"perf_event_open", "lookup_dcookie", "kcmp"}},
    {"module", {"init_module", "finit_module", "delete_module", "create_module", "query_module",
                "get_kernel_syms"}},
    {"mount", {"mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
               "move_mount", "open_tree", "mount_setattr"}},
    {"reboot", {"reboot", "kexec_load", "kexec_file_load"}},
    {"swap", {"swapon", "swapoff"}},
    {"clock", {"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"}},
    {"raw-io", {"iopl", "ioperm", "pciconfig_iobase", "pciconfig_read", "pciconfig_write"}},
    {"keyring", {"keyctl", "add_key", "request_key"}},
    {"memory", {"userfaultfd"}},
    {"handles", {"open_by_handle_at"}},
    {"admin", {"acct", "quotactl", "quotactl_fd", "syslog", "vhangup", "nfsservctl"}},
    {"obsolete", {"uselib", "_sysctl", "sysfs", "ustat", "afs_syscall", "tuxcall", "security",
                  "vserver", "getpmsg", "putpmsg", "bdflush", "vm86", "vm86old"}},
};

}  // namespace

std::vector<sock_filter> build_seccomp_filter(const SeccompOptions& options) {
    Ctx c{seccomp_init(SCMP_ACT_ALLOW)};
    if (!c.ctx) fail("seccomp_init", -ENOMEM);
    // Another ABI's system-call numbers (i386 socketcall through int 0x80, x32) would slip
    // past the argument checks below: such a call kills the process.
    check(seccomp_attr_set(c.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad-arch action");
    const auto deny = SCMP_ACT_ERRNO(EPERM);
    // Socket families: AF_UNSPEC (the kernel refuses it), AF_UNIX, AF_INET, AF_INET6 pass;
    // AF_NETLINK only as NETLINK_ROUTE (getifaddrs(), glibc's address checks; it reaches the
    // kernel, not the network, and changes need CAP_NET_ADMIN); every other family fails.
    // The rules do not overlap, so their order does not matter.
    for (int nr : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
        for (unsigned family = AF_UNIX + 1; family < AF_INET6; ++family) {
            if (family == AF_INET) continue;
            check(seccomp_rule_add(c.ctx, deny, nr, 1, SCMP_A0(SCMP_CMP_EQ, family)), "socket family");
        }
        for (unsigned family = AF_INET6 + 1; family < AF_NETLINK; ++family)
            check(seccomp_rule_add(c.ctx, deny, nr, 1, SCMP_A0(SCMP_CMP_EQ, family)), "socket family");
        check(seccomp_rule_add(c.ctx, deny, nr, 2, SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
                               SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE)),
              "netlink family");
        // 64-bit comparison: a family with high bits set (the kernel reads an int) is denied too.
        check(seccomp_rule_add(c.ctx, deny, nr, 1, SCMP_A0(SCMP_CMP_GE, AF_NETLINK + 1)), "socket family");
    }
    for (int nr : {SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
                   SCMP_SYS(bpf), SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
                   SCMP_SYS(process_vm_writev), SCMP_SYS(pidfd_getfd)}) {
        check(seccomp_rule_add(c.ctx, deny, nr, 0), "system call rule");
    }
    for (const auto& group : kDeniedGroups) {
        for (const char* call : group.calls) {
            // A name this architecture lacks (vm86 on x86-64) has nothing to deny.
            int nr = seccomp_syscall_resolve_name(call);
            if (nr == __NR_SCMP_ERROR || nr < 0) continue;
            check(seccomp_rule_add(c.ctx, deny, nr, 0), std::string(group.name) + " group: " + call);
        }
    }
    // Pushing input into a terminal the server shares with a shell (TIOCSTI) runs commands in
    // that shell; TIOCLINUX can do the same on a virtual console. The kernel reads the request
    // as 32 bits: the mask catches a request with high bits set.
    for (unsigned long request : {TIOCSTI, TIOCLINUX}) {
        check(seccomp_rule_add(c.ctx, deny, SCMP_SYS(ioctl), 1,
                               SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, request)),
              "terminal ioctl");
    }
    if (!options.allow_user_namespaces) {
        // A user namespace hands its creator every capability inside it, and with them kernel
        // code (netfilter, mount, ...) that is a frequent source of privilege escalations.
        // clone3 takes its flags in memory, where a filter cannot read them: ENOSYS makes libcs
        // (glibc, musl) and Go fall back to clone, whose flags are checked (as Docker and
        // Chromium do).
        check(seccomp_rule_add(c.ctx, deny, SCMP_SYS(unshare), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)),
              "unshare rule");
        check(seccomp_rule_add(c.ctx, deny, SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)),
              "clone rule");
        check(seccomp_rule_add(c.ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3 rule");
    }
    int mfd = ::memfd_create("mcpwarden-seccomp", MFD_CLOEXEC);
    if (mfd < 0) fail("memfd_create", -errno);
    UniqueFd fd(mfd);
    check(seccomp_export_bpf(c.ctx, fd.get()), "export");
    off_t size = ::lseek(fd.get(), 0, SEEK_END);
    if (size <= 0 || size % sizeof(sock_filter) != 0) fail("export size", -EINVAL);
    std::vector<sock_filter> filter(static_cast<size_t>(size) / sizeof(sock_filter));
    if (::pread(fd.get(), filter.data(), static_cast<size_t>(size), 0) != size) fail("read back", -EIO);
    return filter;
}

int landlock_abi() {
    long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */);
    return abi > 0 ? static_cast<int>(abi) : 0;
}

std::unique_ptr<Confinement> make_confinement(const SeccompOptions& seccomp) {
    // The filters are the same for every sandbox: built once per process (the agent spawns
    // many). A failure is not kept: the next sandbox tries again, and fails closed again.
    static const std::vector<sock_filter> filter = build_seccomp_filter({});
    auto c = std::make_unique<Confinement>();
    if (seccomp.allow_user_namespaces) {
        static const std::vector<sock_filter> with_userns = build_seccomp_filter({.allow_user_namespaces = true});
        c->filter = with_userns;
    } else {
        c->filter = filter;
    }
    c->program.len = static_cast<unsigned short>(c->filter.size());
    c->program.filter = c->filter.data();
    static const int abi = [] {
        int v = landlock_abi();
        if (v < 2) spdlog::info("sandboxes get no Landlock domain: {}", landlock_scope(v));
        return v;
    }();
    c->landlock_abi = abi >= 2 ? abi : 0;
    return c;
}

std::string landlock_scope(int abi) {
    if (abi >= 6) return "ptrace, signal, abstract-unix";
    if (abi >= 2) return "ptrace";
    if (abi == 1) return "none (Landlock ABI 1 would refuse renames across directories)";
    return "none (the kernel has no Landlock)";
}

void Confinement::apply(ChildSpec& spec) const {
    spec.seccomp_program = &program;
    spec.landlock_abi = landlock_abi;
}

}  // namespace mcpwarden
