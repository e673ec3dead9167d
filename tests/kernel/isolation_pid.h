// SPDX-License-Identifier: Apache-2.0
// What the process-view and session tests (isolation_pid_test.cpp) and their bypass attempts
// (bypass_isolation_pid_test.cpp) share: a second sandbox to aim at, a real interactive shell on
// a pty, and a run from inside a session keyring holding a key.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace isopid {

using namespace harness;
using namespace std::chrono_literals;

// The status line of /proc/PID/status named `key` ("NSpid:" ...), empty when absent.
inline std::string status_line(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0) return line.substr(key.size());
    }
    return "";
}

// Reads from fd until `needle` appeared in what was read (true) or `timeout` passed.
inline bool read_until(int fd, std::string& buf, const std::string& needle,
                       std::chrono::milliseconds timeout = 60s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (buf.find(needle) == std::string::npos) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char chunk[4096];
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
    return true;
}

// A sandbox running `sleep 300` as nobody with a secret in its environment, started by a
// mcpwarden of its own; `server` is the host pid of its server (PID 2 in its namespace).
class VictimSandbox {
public:
    VictimSandbox() {
        warden_ = ::fork();
        if (warden_ == 0) {
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "run", "--state-dir", state_dir().c_str(), "--env",
                    "VICTIM_TOKEN=secret-of-the-victim", "--", "sleep", "300", nullptr);
            ::_exit(127);
        }
        for (int i = 0; i < 3000 && server == 0; ++i) {
            for (pid_t p : leftover_processes()) {
                std::istringstream ns(status_line(p, "NSpid:"));
                pid_t outer = 0, inner = 0;
                ns >> outer >> inner;
                std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
                std::string name;
                comm >> name;
                if (inner == 2 && name == "sleep") server = p;
            }
            if (server == 0) std::this_thread::sleep_for(10ms);
        }
    }
    ~VictimSandbox() {
        ::kill(warden_, SIGTERM);
        int status = 0;
        ::waitpid(warden_, &status, 0);
    }
    VictimSandbox(const VictimSandbox&) = delete;
    VictimSandbox& operator=(const VictimSandbox&) = delete;

    pid_t server = 0;

private:
    pid_t warden_ = -1;
};

// A process of the host as nobody, outside any sandbox, with a secret in its environment.
class HostNobody {
public:
    HostNobody() {
        pid = ::fork();
        if (pid == 0) {
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::setenv("HOST_TOKEN", "secret-of-the-host", 1);
            if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
                ::setresuid(65534, 65534, 65534) != 0)
                ::_exit(126);
            ::execlp("sleep", "sleep", "300", nullptr);
            ::_exit(127);
        }
        // Up once it runs as nobody under its own name.
        for (int i = 0; i < 1000; ++i) {
            std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
            std::string name;
            comm >> name;
            if (name == "sleep") break;
            std::this_thread::sleep_for(5ms);
        }
    }
    ~HostNobody() {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    HostNobody(const HostNobody&) = delete;
    HostNobody& operator=(const HostNobody&) = delete;
    pid_t pid = -1;
};

// `mcpwarden run -- isoprobe ARGS...` from a process that joined a session keyring of its own
// holding a "user" key (description `desc`, payload `secret`); "@KEY" in args is replaced by
// the key's id. Returns what the probe printed (stdout) and mcpwarden's exit status.
struct KeyringRun {
    std::string out;
    int status = -1;
    long key = -1;
};
inline KeyringRun run_with_session_key(const std::string& desc, const std::string& secret,
                                       const std::vector<std::string>& probe_script) {
    KeyringRun r;
    int out[2], idp[2];
    if (::pipe(out) != 0 || ::pipe(idp) != 0) return r;
    std::string probe = program("isoprobe");
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(out[0]);
        ::close(idp[0]);
        if (::syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, "mcpwarden-test", 0, 0, 0) < 0) ::_exit(120);
        long id = ::syscall(SYS_add_key, "user", desc.c_str(), secret.data(), secret.size(), -3 /* @s */);
        if (id < 0) ::_exit(121);
        (void)!::write(idp[1], &id, sizeof id);
        std::string script;
        for (const auto& line : probe_script) {
            std::string l = line;
            for (auto at = l.find("@KEY"); at != std::string::npos; at = l.find("@KEY"))
                l.replace(at, 4, std::to_string(id));
            script += probe + " " + l + "; ";
        }
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(out[1], 1);
        ::dup2(null, 2);
        ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "run", "--state-dir", state_dir().c_str(), "--", "sh", "-c",
                script.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(idp[1]);
    (void)!::read(idp[0], &r.key, sizeof r.key);
    ::close(idp[0]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    ::waitpid(pid, &r.status, 0);
    return r;
}

// The same probe run directly (no sandbox) as nobody from such a session: the control.
inline std::string key_read_as_nobody_in_own_session(const std::string& secret) {
    int out[2];
    if (::pipe(out) != 0) return "";
    std::string probe = program("isoprobe");  // as root: the first call makes the programs' directory
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(out[0]);
        if (::syscall(SYS_keyctl, 1, "mcpwarden-test-control", 0, 0, 0) < 0) ::_exit(120);
        long id = ::syscall(SYS_add_key, "user", "mcpwarden-control-key", secret.data(), secret.size(), -3);
        if (id < 0) ::_exit(121);
        ::dup2(out[1], 1);
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(126);
        ::execl(probe.c_str(), probe.c_str(), "key-read", std::to_string(id).c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    std::string s;
    char buf[512];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    ::waitpid(pid, nullptr, 0);
    return s;
}

// An interactive root shell on a pty of the test's own (the invoking terminal). `type` sends a
// line as typed; `wait_for` reads its terminal until text appears.
class PtyShell {
public:
    PtyShell() {
        // Linux 6.2+ may have TIOCSTI off for everyone (dev.tty.legacy_tiocsti): on for the test,
        // so that only the sandbox stands between the server and the shell.
        std::ifstream in(kLegacy);
        if (in >> legacy_) {
            std::ofstream(kLegacy) << "1";
        }
        master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) return;
        std::string slave = ::ptsname(master_);
        shell_ = ::fork();
        if (shell_ == 0) {
            ::setsid();
            int fd = ::open(slave.c_str(), O_RDWR);  // the session's controlling terminal
            ::dup2(fd, 0);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            if (fd > 2) ::close(fd);
            ::setenv("PS1", "$ ", 1);
            ::setenv("ENV", "/dev/null", 1);
            ::execl("/bin/sh", "sh", "-i", nullptr);
            ::_exit(127);
        }
    }
    ~PtyShell() {
        if (shell_ > 0) {
            type("exit");
            for (int i = 0; i < 1000 && ::waitpid(shell_, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
            ::kill(shell_, SIGKILL);
            ::waitpid(shell_, nullptr, 0);
        }
        if (master_ >= 0) ::close(master_);
        if (!legacy_.empty()) std::ofstream(kLegacy) << legacy_;
    }
    PtyShell(const PtyShell&) = delete;
    PtyShell& operator=(const PtyShell&) = delete;

    bool ok() const { return master_ >= 0 && shell_ > 0; }
    void type(const std::string& line) { (void)!::write(master_, (line + "\n").data(), line.size() + 1); }
    bool wait_for(const std::string& text) { return read_until(master_, seen, text); }
    std::string seen;

private:
    static constexpr const char* kLegacy = "/proc/sys/dev/tty/legacy_tiocsti";
    int master_ = -1;
    pid_t shell_ = -1;
    std::string legacy_;
};

// Runs, from an interactive shell on a pty, a sandbox whose server pushes `touch MARKER` into
// its stdin (the pty) with TIOCSTI. Returns the probe's line; `ran` tells whether the shell ran
// the injected command after mcpwarden ended.
struct TiocstiOutcome {
    bool shell_ok = false;
    std::string probe_line;
    bool ran = false;
    std::string transcript;
};
inline TiocstiOutcome tiocsti_through_sandbox(bool sandboxed) {
    TiocstiOutcome o;
    char dir_tmpl[] = "/tmp/mcpwarden-tiocsti-XXXXXX";
    std::string dir = ::mkdtemp(dir_tmpl);
    std::string marker = dir + "/injected";
    {
        PtyShell sh;
        if (!sh.ok()) return o;
        std::string probe = program("isoprobe");
        std::string cmd = probe + " tiocsti 'touch " + marker + "'";
        if (sandboxed) cmd = std::string(MCPWARDEN_BIN) + " run --state-dir " + state_dir() + " -- " + cmd;
        else cmd = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups " + cmd;
        sh.type(cmd + "; echo PROBE-$((40+1))");
        o.shell_ok = sh.wait_for("PROBE-41");
        // What was injected sits in the terminal's input before this line: the shell runs it first.
        sh.type("echo END-$((40+2))");
        o.shell_ok = sh.wait_for("END-42") && o.shell_ok;
        o.transcript = sh.seen;
        for (const char* p : {"ok pushed", "errno"}) {
            auto at = sh.seen.find(p);
            if (at != std::string::npos) o.probe_line = sh.seen.substr(at, sh.seen.find('\n', at) - at);
        }
        while (!o.probe_line.empty() && (o.probe_line.back() == '\r')) o.probe_line.pop_back();
    }
    struct stat st {};
    o.ran = ::stat(marker.c_str(), &st) == 0;
    ::unlink(marker.c_str());
    ::rmdir(dir.c_str());
    return o;
}

}  // namespace isopid
