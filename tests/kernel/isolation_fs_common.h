// SPDX-License-Identifier: Apache-2.0
// Helpers of the filesystem-view tests (isolation_fs_test.cpp, bypass_isolation_fs_test.cpp).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "error.h"
#include "harness.h"
#include "policy.h"
#include "sandbox.h"

namespace isofs {

// `mcpwarden run ...` in the background, its stdin and stdout ours: what it prints is read
// line by line, and closing its stdin ends it (the helpers wait for that).
class Background {
public:
    explicit Background(const std::vector<std::string>& args) {
        int in[2], out[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
        std::vector<std::string> argv{MCPWARDEN_BIN, "run", "--state-dir", harness::state_dir()};
        argv.insert(argv.end(), args.begin(), args.end());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            std::vector<char*> a;
            for (auto& s : argv) a.push_back(s.data());
            a.push_back(nullptr);
            ::execv(a[0], a.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        stdin_ = in[1];
        stdout_ = out[0];
    }
    ~Background() {
        finish();
        if (stdout_ >= 0) ::close(stdout_);
    }
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;

    // The next line it prints ("" at its end or after `timeout`).
    std::string line(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return l;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return "";
            pollfd p{stdout_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char b[4096];
            ssize_t n = ::read(stdout_, b, sizeof b);
            if (n <= 0) return "";
            buf_.append(b, static_cast<size_t>(n));
        }
    }

    // Ends its stdin and waits: its exit code (128+N for signal N).
    int finish() {
        if (stdin_ >= 0) {
            ::close(stdin_);
            stdin_ = -1;
        }
        if (pid_ > 0) {
            int status = 0;
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
            code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        return code_;
    }

private:
    pid_t pid_ = -1;
    int stdin_ = -1, stdout_ = -1;
    int code_ = -1;
    std::string buf_;
};

// A policy's filesystem section reaches the view through RunOptions: runs `sh -c script` in a
// sandbox of `policy` in this process (hosted, like the agent does) and returns its stdout and
// stderr. Throws what the run throws (mcpwarden::Error).
inline std::string run_with_policy(const mcpwarden::Policy& policy, const std::string& script) {
    std::string out_path = harness::state_dir() + "/fs-out-" + std::to_string(::getpid());
    int out = ::open(out_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct Close {
        int a, b;
        std::string path;
        ~Close() {
            ::close(a);
            ::close(b);
            ::unlink(path.c_str());
        }
    } close{out, in, out_path};
    mcpwarden::RunOptions o;
    o.policy = policy;
    o.command = {"sh", "-c", script};
    o.state_dir = harness::state_dir();
    o.hosted = true;
    o.stdin_fd = in;
    o.stdout_fd = out;
    o.stderr_fd = out;
    mcpwarden::Sandbox sandbox(o);
    sandbox.run();
    std::string text;
    mcpwarden::read_file(out_path, text);
    return text;
}

// A directory of the test's own under `parent` (created, with `parent` if it is missing), the
// whole of it removed at the end.
class HostDir {
public:
    HostDir(const std::string& parent, const std::string& prefix, mode_t mode = 0755) {
        if (!std::filesystem::exists(parent)) {
            std::filesystem::create_directories(parent);
            made_parent_ = parent;
        }
        std::string tmpl = parent + "/" + prefix + "XXXXXX";
        std::vector<char> b(tmpl.begin(), tmpl.end());
        b.push_back('\0');
        if (!::mkdtemp(b.data())) throw std::runtime_error("mkdtemp " + tmpl);
        path_ = b.data();
        ::chmod(path_.c_str(), mode);
    }
    ~HostDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        if (!made_parent_.empty()) std::filesystem::remove(made_parent_, ec);
    }
    HostDir(const HostDir&) = delete;
    HostDir& operator=(const HostDir&) = delete;
    const std::string& path() const { return path_; }
    // A file in it, world-readable, with `text`.
    std::string file(const std::string& name, const std::string& text = "secret\n", mode_t mode = 0666) const {
        std::string p = path_ + "/" + name;
        std::ofstream(p) << text;
        ::chmod(p.c_str(), mode);
        return p;
    }

private:
    std::string path_, made_parent_;
};

}  // namespace isofs
