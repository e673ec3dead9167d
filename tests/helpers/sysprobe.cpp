// SPDX-License-Identifier: Apache-2.0
// sysprobe: makes one system call a hostile server might try beyond the network, and prints
// "ok" or the errno's name (EPERM, ENOSYS, ...) on one line. The arguments are chosen so that
// even root outside a sandbox changes nothing: a missing path, an invalid clock, a bad magic
// number; only the answer (EPERM from the filter, or the kernel's own error) matters.
//
//   sysprobe perf | userfaultfd | keyctl | add_key | open_by_handle_at | mount | umount |
//            fsopen | pivot_root | init_module | finit_module | delete_module | reboot | swapon |
//            clock_settime | iopl | ioperm | uselib | unshare-user | clone-user | clone3 |
//            tiocsti | tiocsti-high | kexec_load
//   sysprobe flood-connect ADDR PORT SECONDS    denied TCP connects in a tight loop; prints the count
//   sysprobe open-files    opens /dev/null until refused; prints the descriptors then held and the errno
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::string errno_name(int e) {
    switch (e) {
        case EPERM: return "EPERM";
        case ENOSYS: return "ENOSYS";
        case EACCES: return "EACCES";
        case EINVAL: return "EINVAL";
        case EFAULT: return "EFAULT";
        case ENOENT: return "ENOENT";
        case EBADF: return "EBADF";
        case ENODEV: return "ENODEV";
        case EIO: return "EIO";
        case ENOTTY: return "ENOTTY";
        case EBUSY: return "EBUSY";
        case ENOEXEC: return "ENOEXEC";
        case EOPNOTSUPP: return "EOPNOTSUPP";
        case EMFILE: return "EMFILE";
        case ENFILE: return "ENFILE";
    }
    return "errno " + std::to_string(e);
}

int report(long rc) {
    std::puts(rc < 0 ? errno_name(errno).c_str() : "ok");
    return 0;
}

// A terminal of its own made the controlling one (setsid, then open without O_NOCTTY): the
// case where TIOCSTI works without privileges. The pushed byte stays in this pty.
// A sandbox's /dev has no ptmx: there the request goes to stdin, which the filter judges by the
// request alone (without the filter a pipe answers ENOTTY).
long tiocsti(unsigned long request) {
    char c = '#';
    int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) return ::syscall(SYS_ioctl, 0, request, &c);
    if (::grantpt(master) != 0 || ::unlockpt(master) != 0) return -1;
    ::setsid();
    int slave = ::open(::ptsname(master), O_RDWR);
    if (slave < 0) return -1;
    return ::syscall(SYS_ioctl, slave, request, &c);
}

long clone_user() {
    long pid = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid == 0) ::_exit(0);
    if (pid > 0) ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return pid;
}

int flood(const char* addr, int port, int seconds) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, addr, &sa.sin_addr);
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    unsigned long n = 0, denied = 0;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    while (std::chrono::steady_clock::now() < end) {
        for (int i = 0; i < 256; ++i, ++n) {
            if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno == EPERM) ++denied;
        }
    }
    std::printf("%lu %lu\n", n, denied);
    return 0;
}

// Descriptors are allocated lowest first, so the last one opened, plus one, is how many the
// process held when the kernel refused the next. Stops at 65536 all the same: without a limit
// of the sandbox's own, the test's would apply, and that may be far more.
int open_files() {
    int last = 2;
    for (int i = 0; i < 65536; ++i) {
        int fd = ::open("/dev/null", O_RDONLY);
        if (fd < 0) {
            std::printf("%d %s\n", last + 1, errno_name(errno).c_str());
            return 0;
        }
        last = fd;
    }
    std::printf("%d ok\n", last + 1);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return 64;
    std::string op = argv[1];
    if (op == "perf") {
        perf_event_attr attr{};
        attr.size = sizeof attr;
        attr.type = PERF_TYPE_SOFTWARE;
        attr.config = PERF_COUNT_SW_TASK_CLOCK;
        attr.exclude_kernel = 1;
        return report(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    }
    if (op == "userfaultfd") return report(::syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
    if (op == "keyctl") return report(::syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    if (op == "add_key") return report(::syscall(SYS_add_key, "user", "mcpwarden-probe", "x", 1, -3));
    if (op == "open_by_handle_at") return report(::syscall(SYS_open_by_handle_at, AT_FDCWD, nullptr, O_RDONLY));
    if (op == "mount") return report(::syscall(SYS_mount, "none", "/nonexistent-mcpwarden", "tmpfs", 0, nullptr));
    if (op == "umount") return report(::syscall(SYS_umount2, "/nonexistent-mcpwarden", 0));
    if (op == "fsopen") return report(::syscall(SYS_fsopen, "nonexistent-mcpwarden-fs", 0));
    if (op == "pivot_root") return report(::syscall(SYS_pivot_root, "/nonexistent-mcpwarden", "/nonexistent-mcpwarden"));
    if (op == "init_module") return report(::syscall(SYS_init_module, nullptr, 0, ""));
    if (op == "finit_module") return report(::syscall(SYS_finit_module, -1, "", 0));
    if (op == "delete_module") return report(::syscall(SYS_delete_module, "nonexistent_mcpwarden", O_NONBLOCK));
    if (op == "reboot") return report(::syscall(SYS_reboot, 0, 0, 0, nullptr));  // bad magic: EINVAL for root
    if (op == "swapon") return report(::syscall(SYS_swapon, "/nonexistent-mcpwarden", 0));
    if (op == "clock_settime") return report(::syscall(SYS_clock_settime, 999, nullptr));
    if (op == "iopl") return report(::syscall(SYS_iopl, 4));            // levels are 0-3
    if (op == "ioperm") return report(::syscall(SYS_ioperm, 0x10000UL, 1UL, 0));  // past the last port
    if (op == "uselib") return report(::syscall(SYS_uselib, "/nonexistent-mcpwarden"));
    if (op == "unshare-user") return report(::syscall(SYS_unshare, CLONE_NEWUSER));
    if (op == "clone-user") return report(clone_user());
    if (op == "clone3") return report(::syscall(SYS_clone3, nullptr, 0));  // size 0: EINVAL from the kernel
    if (op == "tiocsti") return report(tiocsti(TIOCSTI));
    if (op == "tiocsti-high") return report(tiocsti(TIOCSTI | (1UL << 32)));
    if (op == "kexec_load") return report(::syscall(SYS_kexec_load, 0, 0, nullptr, 0xdead0000UL));  // bad flags
    if (op == "open-files") return open_files();
    if (op == "flood-connect" && argc == 5) return flood(argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
    std::fprintf(stderr, "sysprobe: unknown probe %s\n", op.c_str());
    return 64;
}
