// SPDX-License-Identifier: Apache-2.0
// For tests of a running `mcpwarden agent` by unprivileged clients: test users, clients in
// child processes with a user's uid, and what the agent holds, read from /proc (the figures
// the agent's bypass attempts and the soak test compare with a baseline).
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "harness.h"

namespace agentfig {

struct User {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

// A system user of its own group, for the test to remove (userdel) when done.
inline User make_user(const std::string& name) {
    harness::command({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name});
    User u{name};
    if (auto* pw = ::getpwnam(name.c_str())) {
        u.uid = pw->pw_uid;
        u.gid = pw->pw_gid;
    }
    return u;
}

// In a child process: takes `user`'s uid and gid (no supplementary groups) and, while still
// root, a descriptor limit of `nofile` (0: unchanged). False when it could not.
inline bool become(const User& user, rlim_t nofile = 0) {
    if (nofile) {
        rlimit rl{nofile, nofile};
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
    return ::setgroups(0, nullptr) == 0 && ::setgid(user.gid) == 0 && ::setuid(user.uid) == 0;
}

// Runs `fn` in a child process as `user`; its return value is the child's exit status (-1
// when it did not exit).
inline int as_child(const User& user, const std::function<int()>& fn, rlim_t nofile = 0) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (!become(user, nofile)) ::_exit(100);
        int rc = 101;
        try {
            rc = fn();
        } catch (...) {
        }
        ::_exit(rc);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs `hold` as `user` in a child and waits for the character it returns; then runs
// `meanwhile` here while the child still holds what it made (connections, sandboxes), and
// lets it end. Returns hold's character (0 when it gave none).
inline char while_held(const User& user, const std::function<char()>& hold, const std::function<void()>& meanwhile,
                       rlim_t nofile = 0) {
    int ready[2], done[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(done, O_CLOEXEC) != 0) return 0;
    pid_t pid = ::fork();
    if (pid == 0) {
        char c = 0;
        if (become(user, nofile)) {
            try {
                c = hold();
            } catch (...) {
            }
        }
        (void)!::write(ready[1], &c, 1);
        (void)!::read(done[0], &c, 1);
        ::_exit(0);
    }
    ::close(ready[1]);
    ::close(done[0]);
    char verdict = 0;
    if (::read(ready[0], &verdict, 1) != 1) verdict = 0;
    meanwhile();
    (void)!::write(done[1], "x", 1);
    ::waitpid(pid, nullptr, 0);
    ::close(ready[0]);
    ::close(done[1]);
    return verdict;
}

struct Figures {
    int fds = 0;
    int threads = 0;
    long rss_kib = 0;
    int zombies = 0;  // children of the agent that ended and were not reaped
};

inline Figures figures(pid_t pid) {
    namespace fs = std::filesystem;
    Figures f;
    std::string dir = "/proc/" + std::to_string(pid);
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir + "/fd", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++f.fds;
    std::ifstream status(dir + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("Threads:", 0) == 0) f.threads = std::stoi(line.substr(8));
        if (line.rfind("VmRSS:", 0) == 0) f.rss_kib = std::stol(line.substr(6));
    }
    for (auto it = fs::directory_iterator("/proc", ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::string name = it->path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream in(it->path() / "stat");
        std::string stat;
        std::getline(in, stat);
        auto close = stat.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(stat.substr(close + 2));
        char state = 0;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == pid && state == 'Z') ++f.zombies;
    }
    return f;
}

}  // namespace agentfig
