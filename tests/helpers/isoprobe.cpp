// SPDX-License-Identifier: Apache-2.0
// Probes of the isolation between a sandbox and the rest of the machine, run as the sandboxed
// server. Each verb prints one line saying what happened ("ok ..." or "errno N (NAME)") and
// exits 0 when the attempt succeeded, 1 when the kernel refused it, 2 on bad usage.
//
//   isoprobe kill PID              kill(PID, 0)
//   isoprobe read PATH             open and read PATH (first bytes printed)
//   isoprobe write-mem PID         open /proc/PID/mem for writing and write a byte at the stack
//   isoprobe readlink PATH         readlink PATH (e.g. /proc/PID/root)
//   isoprobe list-fd PID           list /proc/PID/fd
//   isoprobe tiocsti TEXT          push TEXT and a newline into the terminal on stdin (TIOCSTI)
//   isoprobe key-read ID           read the key ID (KEYCTL_READ)
//   isoprobe key-search DESC       search the session keyring for the "user" key DESC
//   isoprobe pids                  print the pids /proc lists
//   isoprobe orphan                leave an orphaned grandchild that exits, then wait until it
//                                  is reaped (ok) or stays a zombie for 30 s (errno ETIMEDOUT)
//   isoprobe term-handler          prints "ready"; on SIGTERM prints "handled" and exits 3
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int refused(int err) {
    std::printf("errno %d (%s)\n", err, strerrorname_np(err) ? strerrorname_np(err) : "?");
    return 1;
}

int ok(const std::string& what) {
    std::printf("ok %s\n", what.c_str());
    return 0;
}

// A zombie stays in /proc until its parent reaps it.
bool is_zombie_or_gone(pid_t pid, bool* gone) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (!f) {
        *gone = true;
        return true;
    }
    char buf[512] = {};
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* close = std::strrchr(buf, ')');
    *gone = false;
    return close && close[1] == ' ' && close[2] == 'Z';
}

int orphan() {
    int info[2], hold[2];
    if (::pipe(info) != 0 || ::pipe(hold) != 0) return refused(errno);
    pid_t middle = ::fork();
    if (middle == 0) {
        pid_t grandchild = ::fork();
        if (grandchild == 0) {
            // Exits once orphaned and released: every write end of `hold` closed.
            ::close(hold[1]);
            char c;
            while (::read(hold[0], &c, 1) > 0) {
            }
            ::_exit(0);
        }
        (void)!::write(info[1], &grandchild, sizeof grandchild);
        ::_exit(0);
    }
    ::close(info[1]);
    pid_t grandchild = 0;
    if (::read(info[0], &grandchild, sizeof grandchild) != sizeof grandchild) return refused(EIO);
    int status;
    ::waitpid(middle, &status, 0);  // the grandchild is an orphan now
    ::close(hold[1]);               // and exits
    for (int i = 0; i < 3000; ++i) {
        bool gone = false;
        is_zombie_or_gone(grandchild, &gone);
        if (gone) return ok("reaped");
        ::usleep(10000);
    }
    return refused(ETIMEDOUT);
}

volatile sig_atomic_t got_term = 0;

int term_handler() {
    struct sigaction sa {};
    sa.sa_handler = [](int) { got_term = 1; };
    ::sigaction(SIGTERM, &sa, nullptr);
    std::printf("ready\n");
    std::fflush(stdout);
    while (!got_term) ::pause();
    std::printf("handled\n");
    std::fflush(stdout);
    return 3;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    std::string verb = argv[1];
    const char* arg = argc > 2 ? argv[2] : "";
    if (verb == "kill") {
        if (::kill(std::atoi(arg), 0) != 0) return refused(errno);
        return ok("signalled");
    }
    if (verb == "read") {
        int fd = ::open(arg, O_RDONLY);
        if (fd < 0) return refused(errno);
        char buf[64] = {};
        ssize_t n = ::read(fd, buf, sizeof buf - 1);
        if (n < 0) return refused(errno);
        for (ssize_t i = 0; i < n; ++i) buf[i] = (buf[i] >= 32 && buf[i] < 127) ? buf[i] : '.';
        return ok(std::to_string(n) + " bytes: " + buf);
    }
    if (verb == "write-mem") {
        std::string path = std::string("/proc/") + arg + "/mem";
        int fd = ::open(path.c_str(), O_RDWR);
        if (fd < 0) return refused(errno);
        // Where: any mapped address of the target; its stack start from /proc/PID/stat would
        // need that file too. A write anywhere already means code injection is possible.
        char c = 0;
        if (::pwrite(fd, &c, 1, 0x400000) < 0 && errno != EIO) return refused(errno);
        return ok("opened for writing");
    }
    if (verb == "readlink") {
        char buf[4096];
        ssize_t n = ::readlink(arg, buf, sizeof buf - 1);
        if (n < 0) return refused(errno);
        buf[n] = 0;
        return ok(buf);
    }
    if (verb == "list-fd") {
        std::string path = std::string("/proc/") + arg + "/fd";
        DIR* d = ::opendir(path.c_str());
        if (!d) return refused(errno);
        int n = 0;
        while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
        ::closedir(d);
        return ok(std::to_string(n) + " fds");
    }
    if (verb == "tiocsti") {
        std::string line = std::string(arg) + "\n";
        for (const char& c : line) {
            if (::ioctl(0, TIOCSTI, &c) != 0) return refused(errno);
        }
        return ok("pushed");
    }
    if (verb == "key-read") {
        char buf[256] = {};
        long n = ::syscall(SYS_keyctl, 11 /* KEYCTL_READ */, std::atol(arg), buf, sizeof buf - 1, 0);
        if (n < 0) return refused(errno);
        return ok(std::string("read: ") + buf);
    }
    if (verb == "key-search") {
        long id = ::syscall(SYS_keyctl, 10 /* KEYCTL_SEARCH */, -3 /* KEY_SPEC_SESSION_KEYRING */,
                            "user", arg, 0);
        if (id < 0) return refused(errno);
        return ok("found key " + std::to_string(id));
    }
    if (verb == "pids") {
        DIR* d = ::opendir("/proc");
        if (!d) return refused(errno);
        std::string out;
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] >= '1' && e->d_name[0] <= '9') out += std::string(out.empty() ? "" : " ") + e->d_name;
        }
        ::closedir(d);
        return ok(out);
    }
    if (verb == "orphan") return orphan();
    if (verb == "term-handler") return term_handler();
    return 2;
}
