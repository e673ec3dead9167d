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
// Usage (by mcpwarden only): mcpwarden-init SERVER_PID STATUS_FD WATCH_PARENT
//   WATCH_PARENT 1: when mcpwarden (the only reader of STATUS_FD) is gone, the sandbox ends.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

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
void report(int status_fd, const siginfo_t& info) {
    int msg[2] = {info.si_code, info.si_status};
    (void)!::write(status_fd, msg, sizeof msg);
}

[[noreturn]] void end_like(const siginfo_t& info) {
    ::_exit(info.si_code == CLD_EXITED ? info.si_status & 0xff : 128 + (info.si_status & 0x7f));
}

}  // namespace

int main(int argc, char** argv) {
    // No exec gains anything from here on (process.cpp leaves this to us: set before our exec,
    // it would have made the effective uid the real one). Already non-dumpable (the exec with
    // real != effective uid); said again in case a kernel treats it otherwise. File access as
    // the real user, never as uid 0.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 125;
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    ::syscall(SYS_setfsgid, ::getgid());
    ::syscall(SYS_setfsuid, ::getuid());
    if (argc != 4 || ::getpid() != 1) {
        static const char usage[] = "mcpwarden-init is started by mcpwarden as a sandbox's PID 1\n";
        (void)!::write(2, usage, sizeof usage - 1);
        return 125;
    }
    const long server = number(argv[1]);
    const long status_fd = number(argv[2]);
    const bool watch_parent = argv[3][0] == '1';
    if (server <= 1 || status_fd < 0) return 125;

    // Every signal arrives blocked (process.cpp); the ones waited for come through a signalfd,
    // the rest stay blocked. SIGPIPE: a gone reader (an agent restarting) must not end us.
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGHUP);
    // Blocked again here: a signalfd sees only blocked signals, and a SIGCHLD that is not
    // blocked would be discarded, leaving the server's end unseen.
    if (::sigprocmask(SIG_BLOCK, &wanted, nullptr) != 0) return 125;
    int sfd = ::signalfd(-1, &wanted, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) return 125;

    pollfd fds[2] = {{sfd, POLLIN, 0}, {static_cast<int>(status_fd), 0, 0}};
    const nfds_t nfds = watch_parent ? 2 : 1;
    for (;;) {
        // Reap first: the server may have ended before the signalfd existed.
        for (;;) {
            siginfo_t info{};
            if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) break;
            if (info.si_pid == server) {
                report(static_cast<int>(status_fd), info);
                end_like(info);
            }
        }
        int n = ::poll(fds, nfds, -1);
        if (n < 0 && errno != EINTR) return 125;
        if (watch_parent && (fds[1].revents & (POLLERR | POLLHUP))) return 137;  // mcpwarden died
        signalfd_siginfo si{};
        while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            // si_pid 0: sent from outside the namespace (mcpwarden, an administrator). Inside
            // the sandbox, the server can signal itself without us.
            if (si.ssi_signo != SIGCHLD && si.ssi_pid == 0) ::kill(static_cast<pid_t>(server), static_cast<int>(si.ssi_signo));
        }
    }
}
