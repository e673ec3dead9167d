// SPDX-License-Identifier: Apache-2.0
// What the benchmarks share: medians and percentiles of their samples, a command's output, and
// a background sandbox that keeps mcpwarden's egress programs loaded (warm runs).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bench {

inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// The sample at fraction p (0..1) of the sorted samples, nearest rank below.
inline double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

// Runs argv (argv[0] a path) and returns its stdout. With must_succeed, a non-zero exit ends
// the benchmark (exit 1) naming the command and what it printed.
inline std::string run_capture(const std::vector<std::string>& argv, bool must_succeed = true) {
    int out[2];
    if (::pipe(out) != 0) std::exit(1);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[256];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (must_succeed && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        std::fprintf(stderr, "failed: %s (%s)\n", argv[0].c_str(), text.c_str());
        std::exit(1);
    }
    return text;
}

// Whether mcpwarden's egress programs are loaded (some mcpwarden process uses them).
inline bool programs_loaded() {
    struct stat st {};
    return ::stat("/sys/fs/bpf/mcpwarden", &st) == 0;
}

// A `mcpwarden run -- sleep` in the background, as a running agent or any other sandbox would
// be: while it lives, the programs stay loaded and a run measured meanwhile is warm.
class WarmHolder {
public:
    explicit WarmHolder(const std::string& warden) {
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            // However the benchmark ends (exit on an error, a signal, SIGKILL), the holder gets
            // SIGTERM and its sandbox ends: nothing of it stays behind.
            if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != parent) ::_exit(127);
            int null = ::open("/dev/null", O_RDWR);
            for (int fd : {0, 1, 2}) ::dup2(null, fd);
            ::execl(warden.c_str(), warden.c_str(), "run", "--timeout", "1h", "--", "/bin/sleep", "3600", nullptr);
            ::_exit(127);
        }
        for (int i = 0; i < 500 && !programs_loaded(); ++i) ::usleep(10000);
    }
    ~WarmHolder() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }
    WarmHolder(const WarmHolder&) = delete;
    WarmHolder& operator=(const WarmHolder&) = delete;

private:
    pid_t pid_;
};

}  // namespace bench
