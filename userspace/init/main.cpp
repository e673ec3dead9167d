// SPDX-License-Identifier: Apache-2.0
// mcpwarden-init: PID 1 of a sandbox's PID namespace (process.cpp starts it, the server is its
// first child). It reaps every orphan of the namespace, passes SIGTERM, SIGINT and SIGHUP sent
// from outside the sandbox on to the server, and when the server ends it writes the server's
// wait status to mcpwarden's status pipe and exits: the kernel then kills whatever is left in
// the namespace.
//
// It runs with the server's real uid but effective and saved uid 0, without any capability
// (bounding set empty, SECBIT_NOROOT locked, no_new_privs): the server may signal it (only the signals
// it waits for reach a namespace's init, and those from inside the namespace are dropped here),
// but neither ptrace it nor open its /proc/1/{mem,environ,fd,root}, which need the same real,
// effective and saved uid; the exec with real != effective uid also left it non-dumpable from
// its first instruction. It reads nothing the server controls but wait statuses.
//
// On x86-64 and arm64 it is built without a C library (MCPWARDEN_INIT_NOLIBC: its own entry
// point and system calls, a static PIE without relocations): every sandbox start waits for this
// exec, and a C library's start-up (its CPU feature probes trap to the hypervisor on virtual
// machines) cost about 0.4 ms of it. Elsewhere it is linked statically with the C library.
//
// Usage (by mcpwarden only): mcpwarden-init SERVER_PID STATUS_FD WATCH_PARENT
//   WATCH_PARENT 1: when mcpwarden (the only reader of STATUS_FD) is gone, the sandbox ends.
#include <asm/unistd.h>
#include <linux/poll.h>
#include <linux/prctl.h>
#include <linux/signalfd.h>
#include <linux/wait.h>

#ifndef MCPWARDEN_INIT_NOLIBC
#include <errno.h>
#include <unistd.h>
#endif

namespace {

// The kernel's ABI, as the system calls below take it (64-bit architectures).
constexpr int kSigHup = 1, kSigInt = 2, kSigPipe = 13, kSigTerm = 15, kSigChld = 17;
constexpr int kSigBlock = 0;
constexpr long kSigIgn = 1;
constexpr int kEintr = 4;
constexpr int kSfdCloexec = 02000000, kSfdNonblock = 04000;

struct KernelSigaction {  // rt_sigaction: handler, flags, restorer, mask
    long handler;
    unsigned long flags;
    long restorer;
    unsigned long mask;
};

struct KernelSiginfo {  // what waitid fills in for a child (si_signo .. si_status, then the rest)
    int signo, err, code, pad;
    int pid;
    unsigned uid;
    int status;
    int pad2;
    char rest[128 - 32];
};
static_assert(sizeof(KernelSiginfo) == 128, "siginfo is 128 bytes");
static_assert(sizeof(signalfd_siginfo) == 128, "signalfd_siginfo is 128 bytes");

constexpr unsigned long sigbit(int sig) { return 1UL << (sig - 1); }

#ifdef MCPWARDEN_INIT_NOLIBC
// System calls return -errno on failure, as the kernel does.
long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
#if defined(__x86_64__)
    register long r10 asm("r10") = d;
    register long r8 asm("r8") = e;
    long ret;
    asm volatile("syscall"
                 : "=a"(ret)
                 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                 : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 asm("x8") = n;
    register long x0 asm("x0") = a;
    register long x1 asm("x1") = b;
    register long x2 asm("x2") = c;
    register long x3 asm("x3") = d;
    register long x4 asm("x4") = e;
    asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
#else
#error "MCPWARDEN_INIT_NOLIBC is for x86-64 and arm64"
#endif
}
#else
long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
    long r = ::syscall(n, a, b, c, d, e);
    return r == -1 ? -errno : r;
}
#endif

[[noreturn]] void exit_now(int code) {
    for (;;) sys(__NR_exit_group, code);
}

long number(const char* s) {
    long v = 0;
    if (!s || !*s) return -1;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > 1000000000) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

// The server's status as mcpwarden reads it: si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED), si_status.
void report(int status_fd, const KernelSiginfo& info) {
    int msg[2] = {info.code, info.status};
    sys(__NR_write, status_fd, reinterpret_cast<long>(msg), sizeof msg);
}

[[noreturn]] void end_like(const KernelSiginfo& info) {
    exit_now(info.code == 1 /* CLD_EXITED */ ? info.status & 0xff : 128 + (info.status & 0x7f));
}

[[noreturn]] void run(long argc, char** argv) {
    // No exec gains anything from here on (process.cpp leaves this to us: set before our exec,
    // it would have made the effective uid the real one). Already non-dumpable (the exec with
    // real != effective uid); said again in case a kernel treats it otherwise. File access as
    // the real user, never as uid 0.
    if (sys(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) exit_now(125);
    sys(__NR_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
    sys(__NR_setfsgid, sys(__NR_getgid));
    sys(__NR_setfsuid, sys(__NR_getuid));
    if (argc != 4 || sys(__NR_getpid) != 1) {
        static const char usage[] = "mcpwarden-init is started by mcpwarden as a sandbox's PID 1\n";
        sys(__NR_write, 2, reinterpret_cast<long>(usage), sizeof usage - 1);
        exit_now(125);
    }
    const long server = number(argv[1]);
    const long status_fd = number(argv[2]);
    const bool watch_parent = argv[3][0] == '1';
    if (server <= 1 || status_fd < 0) exit_now(125);

    // Every signal arrives blocked (process.cpp); the ones waited for come through a signalfd,
    // the rest stay blocked. SIGPIPE: a gone reader (an agent restarting) must not end us.
    KernelSigaction ignore{kSigIgn, 0, 0, 0};
    sys(__NR_rt_sigaction, kSigPipe, reinterpret_cast<long>(&ignore), 0, sizeof(unsigned long));
    unsigned long wanted = sigbit(kSigChld) | sigbit(kSigTerm) | sigbit(kSigInt) | sigbit(kSigHup);
    // Blocked again here: a signalfd sees only blocked signals, and a SIGCHLD that is not
    // blocked would be discarded, leaving the server's end unseen.
    if (sys(__NR_rt_sigprocmask, kSigBlock, reinterpret_cast<long>(&wanted), 0, sizeof wanted) != 0) exit_now(125);
    long sfd = sys(__NR_signalfd4, -1, reinterpret_cast<long>(&wanted), sizeof wanted, kSfdCloexec | kSfdNonblock);
    if (sfd < 0) exit_now(125);

    pollfd fds[2] = {{static_cast<int>(sfd), POLLIN, 0}, {static_cast<int>(status_fd), 0, 0}};
    const long nfds = watch_parent ? 2 : 1;
    for (;;) {
        // Reap first: the server may have ended before the signalfd existed.
        for (;;) {
            KernelSiginfo info{};
            if (sys(__NR_waitid, P_ALL, 0, reinterpret_cast<long>(&info), WEXITED | WNOHANG, 0) != 0 || info.pid == 0)
                break;
            if (info.pid == server) {
                report(static_cast<int>(status_fd), info);
                end_like(info);
            }
        }
        long n = sys(__NR_ppoll, reinterpret_cast<long>(fds), nfds, 0, 0, 0);
        if (n < 0 && n != -kEintr) exit_now(125);
        if (watch_parent && (fds[1].revents & (POLLERR | POLLHUP))) exit_now(137);  // mcpwarden died
        signalfd_siginfo si{};
        while (sys(__NR_read, sfd, reinterpret_cast<long>(&si), sizeof si) == static_cast<long>(sizeof si)) {
            // si_pid 0: sent from outside the namespace (mcpwarden, an administrator). Inside
            // the sandbox, the server can signal itself without us.
            if (si.ssi_signo != kSigChld && si.ssi_pid == 0) sys(__NR_kill, server, si.ssi_signo);
        }
    }
}

}  // namespace

#ifdef MCPWARDEN_INIT_NOLIBC
// The compiler may call these for the zeroed structures above; -fno-builtin keeps it from
// turning the loops themselves into calls.
extern "C" void* memset(void* dst, int c, unsigned long n) {
    auto* d = static_cast<volatile unsigned char*>(dst);
    for (unsigned long i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(c);
    return dst;
}
extern "C" void* memcpy(void* dst, const void* src, unsigned long n) {
    auto* d = static_cast<volatile unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (unsigned long i = 0; i < n; ++i) d[i] = s[i];
    return dst;
}

// The kernel starts us with argc at the stack pointer and argv right above it.
extern "C" [[noreturn]] void mcpwarden_init_start(long* sp) {
    run(sp[0], reinterpret_cast<char**>(sp + 1));
}

#if defined(__x86_64__)
asm(R"(
    .text
    .globl _start
    .type _start,@function
_start:
    xor %ebp, %ebp
    mov %rsp, %rdi
    and $-16, %rsp
    call mcpwarden_init_start
    hlt
)");
#elif defined(__aarch64__)
asm(R"(
    .text
    .globl _start
    .type _start,%function
_start:
    mov x29, #0
    mov x30, #0
    mov x0, sp
    bl mcpwarden_init_start
    brk #0
)");
#endif
#else
int main(int argc, char** argv) { run(argc, argv); }
#endif
