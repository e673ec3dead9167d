#include "confinement.h"

#include <linux/netlink.h>
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

}  // namespace

std::vector<sock_filter> build_seccomp_filter() {
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

std::unique_ptr<Confinement> make_confinement() {
    // The filter is the same for every sandbox: built once per process (the agent spawns many).
    // A failure is not kept: the next sandbox tries again, and fails closed again.
    static const std::vector<sock_filter> filter = build_seccomp_filter();
    auto c = std::make_unique<Confinement>();
    c->filter = filter;
    c->program.len = static_cast<unsigned short>(c->filter.size());
    c->program.filter = c->filter.data();
    c->landlock_abstract_unix = landlock_abi() >= 6;  // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    return c;
}

void Confinement::apply(ChildSpec& spec) const {
    spec.seccomp_program = &program;
    spec.landlock_abstract_unix = landlock_abstract_unix;
}

}  // namespace mcpwarden
