// SPDX-License-Identifier: Apache-2.0
// A `mcpwarden agent` started by a kernel test (agent_test, agent_durability_test).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "agent_client.h"
#include "fd.h"

namespace harness {

// One scrape of an agent's Prometheus metrics (HTTP over its metrics socket at `path`); "" if
// it does not answer.
inline std::string scrape_metrics(const std::string& path) {
    mcpwarden::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return "";
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";
    std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
    (void)!::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
}

class AgentProcess {
public:
    ~AgentProcess() {
        if (pid_ > 0) stop(SIGKILL);
    }
    // Starts `mcpwarden --log-level info agent --config CONFIG` with stderr appended to `log`;
    // true once `socket` accepts connections.
    bool start(const std::string& config, const std::string& socket, const std::string& log) {
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            ::dup2(fd, 2);
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "--log-level", "info", "agent", "--config", config.c_str(), nullptr);
            ::_exit(127);
        }
        // Up to 30 s: a first start in the VM (software emulation), or a restart that recovers
        // a killed agent's sandboxes, can take more than the 5 s this once allowed.
        for (int i = 0; i < 1200; ++i) {
            if (mcpwarden::AgentClient::connect(socket)) return true;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // it died: no use waiting
                pid_ = -1;
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        }
        return false;
    }
    // Sends `sig` and waits for the end (SIGKILL after `patience`). The wait status, with
    // `timed_out` set when SIGKILL had to end it; -1 when no agent ran.
    int stop(int sig, bool* timed_out = nullptr, std::chrono::seconds patience = std::chrono::seconds(20)) {
        if (timed_out) *timed_out = false;
        if (pid_ <= 0) return -1;
        ::kill(pid_, sig);
        int status = 0;
        auto deadline = std::chrono::steady_clock::now() + patience;
        while (::waitpid(pid_, &status, WNOHANG) != pid_) {
            if (std::chrono::steady_clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                if (timed_out) *timed_out = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        pid_ = -1;
        return status;
    }
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
};

}  // namespace harness
