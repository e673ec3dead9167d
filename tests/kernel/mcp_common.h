// SPDX-License-Identifier: Apache-2.0
// Helpers of the MCP kernel tests (run --mcp, call, the SDK-driven tests).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"

namespace mcptest {

using nlohmann::json;

inline std::string line(const json& j) { return j.dump() + "\n"; }

inline std::string request(const json& id, const std::string& method, const json& params = json::object()) {
    return line({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
}

inline std::string tool_call(const json& id, const std::string& tool, const json& args = json::object(),
                             const json& meta = nullptr) {
    json params = {{"name", tool}, {"arguments", args}};
    if (!meta.is_null()) params["_meta"] = meta;
    return request(id, "tools/call", params);
}

// initialize + notifications/initialized, as every client starts.
inline std::string handshake() {
    return request(0, "initialize",
                   {{"protocolVersion", "2025-06-18"},
                    {"capabilities", json::object()},
                    {"clientInfo", {{"name", "kernel-test"}, {"version", "1"}}}}) +
           line({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}});
}

// Every stdout line must be one JSON object (stdout carries only MCP messages).
inline std::vector<json> messages(const std::string& out) {
    std::vector<json> v;
    size_t start = 0;
    while (start < out.size()) {
        size_t nl = out.find('\n', start);
        if (nl == std::string::npos) nl = out.size();
        std::string l = out.substr(start, nl - start);
        start = nl + 1;
        if (l.empty()) continue;
        json j = json::parse(l, nullptr, false);
        EXPECT_TRUE(j.is_object()) << "stdout line is not a JSON object: " << l.substr(0, 200);
        if (j.is_object()) v.push_back(j);
    }
    return v;
}

// The response (result or error) to request `id`; null when there is none. Fails the test when
// there are several.
inline json response(const std::vector<json>& msgs, const json& id) {
    json found;
    int n = 0;
    for (const auto& m : msgs) {
        if (!m.contains("method") && m.contains("id") && m["id"] == id) {
            found = m;
            ++n;
        }
    }
    EXPECT_LE(n, 1) << "several responses to id " << id;
    return found;
}

inline std::string policy_file(const std::string& name, const std::string& yaml) {
    std::string path = harness::state_dir() + "/" + name + ".yaml";
    std::ofstream(path) << yaml;
    return path;
}

// An interactive mcpwarden: write, wait for answers, then close, like a real client.
class Live {
public:
    explicit Live(std::vector<std::string> args) {
        report_ = harness::state_dir() + "/live-report-" + std::to_string(::getpid()) + ".json";
        ::unlink(report_.c_str());
        std::vector<std::string> argv{MCPWARDEN_BIN};
        bool added = false;
        for (size_t i = 0; i < args.size(); ++i) {
            argv.push_back(args[i]);
            if (!added && args[i] == "run") argv.insert(argv.end(), {"--report", report_, "--state-dir", harness::state_dir()});
            added = added || args[i] == "run";
        }
        int in[2], out[2], err[2];
        if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) throw std::runtime_error("pipe2");
        started_ = std::chrono::steady_clock::now();
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            ::dup2(err[1], 2);
            std::vector<char*> a;
            for (auto& x : argv) a.push_back(x.data());
            a.push_back(nullptr);
            ::execv(a[0], a.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        ::close(err[1]);
        in_ = in[1];
        out_ = out[0];
        err_ = err[0];
    }
    ~Live() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        for (int fd : {in_, out_, err_})
            if (fd >= 0) ::close(fd);
    }
    void send(const std::string& text) {
        size_t off = 0;
        while (off < text.size()) {
            ssize_t n = ::write(in_, text.data() + off, text.size() - off);
            if (n <= 0) break;
            off += static_cast<size_t>(n);
        }
    }
    // Reads until the response to `id` arrived (or the time is up); returns it (null if none).
    json wait_for(const json& id, std::chrono::milliseconds max = std::chrono::seconds(20)) {
        auto until = std::chrono::steady_clock::now() + max;
        for (;;) {
            json r = response(messages(out), id);
            if (!r.is_null() || std::chrono::steady_clock::now() > until) return r;
            pump(100);
        }
    }
    // Reads until stderr holds `text` (or the time is up); true when it does.
    bool wait_for_err(const std::string& text, std::chrono::milliseconds max = std::chrono::seconds(20)) {
        auto until = std::chrono::steady_clock::now() + max;
        while (err.find(text) == std::string::npos) {
            if (std::chrono::steady_clock::now() > until || (out_ < 0 && err_ < 0)) return false;
            pump(100);
        }
        return true;
    }
    void signal(int sig) { ::kill(pid_, sig); }
    void close_stdin() {
        ::close(in_);
        in_ = -1;
    }
    // Closes stdin, reads to the end, reaps; exit code (128+N for signals).
    int finish() {
        if (in_ >= 0) close_stdin();
        while (out_ >= 0 || err_ >= 0) pump(200);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
        std::ifstream f(report_);
        if (f) report = json::parse(f, nullptr, false);
        ::unlink(report_.c_str());
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    std::string out, err;
    json report;
    std::chrono::milliseconds elapsed{0};

private:
    void pump(int timeout_ms) {
        struct pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
        if (::poll(p, 2, timeout_ms) <= 0) return;
        char buf[65536];
        for (int i = 0; i < 2; ++i) {
            int& fd = i == 0 ? out_ : err_;
            if (fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) (i == 0 ? out : err).append(buf, static_cast<size_t>(n));
            else {
                ::close(fd);
                fd = -1;
            }
        }
    }
    pid_t pid_ = -1;
    int in_ = -1, out_ = -1, err_ = -1;
    std::string report_;
    std::chrono::steady_clock::time_point started_;
};

}  // namespace mcptest
