// SPDX-License-Identifier: Apache-2.0
// A cgroup of the kernel tests' own (not a sandbox) with a process started inside before
// anything is attached: for cgroup-scoped deployments (attach_test, agent_durability_test).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cgroup.h"
#include "fd.h"
#include "harness.h"

namespace harness {

// Writes `line` (with its newline) to `to` and returns the next line read from `from` (""
// when none comes within timeout_ms): one request to a shell loop in a test process.
inline std::string ask_line(int to, int from, const std::string& line, int timeout_ms = 10000) {
    std::string text = line + "\n";
    if (::write(to, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return "write failed";
    std::string out;
    char c;
    pollfd p{from, POLLIN, 0};
    while (::poll(&p, 1, timeout_ms) > 0 && ::read(from, &c, 1) == 1 && c != '\n') out += c;
    return out;
}

// A cgroup of the test's own on the unified hierarchy, with a shell inside that was started
// before anything is attached; probe() has that shell run netprobe tcp4 (a new socket each time),
// resolve() netprobe resolve. With `netns` (a name under /run/netns) the shell runs in that
// network namespace.
class TestCgroup {
public:
    explicit TestCgroup(const std::string& netns = "") {
        path_ = mcpwarden::CgroupLayout::detect().unified_mount + "/mw-attach-test-" + std::to_string(::getpid()) +
                "-" + std::to_string(++seq_);
        ::rmdir(path_.c_str());
        EXPECT_EQ(::mkdir(path_.c_str(), 0755), 0) << path_;
        int in[2], out[2];
        EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
        std::string procs = path_ + "/cgroup.procs";
        std::string np = program("netprobe");
        std::string script = "while read a p; do if [ \"$a\" = resolve ]; then " + np + " resolve $p | head -n 1; else " +
                             np + " tcp4 $a $p; fi; done";
        std::string ns_path = netns.empty() ? "" : "/run/netns/" + netns;
        pid_ = ::fork();
        if (pid_ == 0) {
            if (!ns_path.empty()) {  // before it joins the cgroup: every process listed is inside
                int ns = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
                if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) ::_exit(125);
            }
            int fd = ::open(procs.c_str(), O_WRONLY);
            if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(126);
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            ::execl("/bin/sh", "sh", "-c", script.c_str(), nullptr);
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        to_ = in[1];
        from_ = out[0];
        // Ready once the shell is inside (and so in its namespace): an attach sees it.
        for (int i = 0; i < 500; ++i) {
            std::string procs;
            mcpwarden::read_file(procs_path(), procs);
            if (!procs.empty()) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    std::string procs_path() const { return path_ + "/cgroup.procs"; }
    ~TestCgroup() {
        ::close(to_);
        ::close(from_);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        for (int i = 0; i < 200 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::string& path() const { return path_; }
    std::uint64_t id() const {
        struct stat st {};
        ::stat(path_.c_str(), &st);
        return st.st_ino;
    }
    std::string probe(const std::string& address, const std::string& port) {
        return ask_line(to_, from_, address + " " + port);
    }
    std::string resolve(const std::string& name) { return ask_line(to_, from_, "resolve " + name); }

private:
    static inline int seq_ = 0;
    std::string path_;
    pid_t pid_ = -1;
    int to_ = -1, from_ = -1;
};

}  // namespace harness
