// SPDX-License-Identifier: Apache-2.0
#include "agent_client.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent_config.h"
#include "policy_dir.h"

extern char** environ;

namespace mcpwarden {

using json = nlohmann::json;

std::string agent_socket_path(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* env = std::getenv(kAgentSocketEnv); env && *env) return env;
    return kDefaultAgentSocket;
}

std::optional<AgentClient> AgentClient::connect(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw Error(ErrorKind::usage, "agent socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw Error(ErrorKind::internal, errno_text("socket", errno));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        int err = errno;
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) return std::nullopt;
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot connect to the mcpwarden agent at " + path, err),
                    {{"socket", path}});
    }
    AgentClient c;
    c.fd_ = std::move(fd);
    c.path_ = path;
    return c;
}

void AgentClient::send(const json& request, std::span<const int> fds) {
    std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::size_t off = 0;
    bool first = true;
    while (off < line.size()) {
        iovec iov{line.data() + off, line.size() - off};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        std::vector<char> cbuf;
        if (first && !fds.empty()) {
            cbuf.resize(CMSG_SPACE(sizeof(int) * fds.size()));
            msg.msg_control = cbuf.data();
            msg.msg_controllen = cbuf.size();
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        }
        ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            // The agent may answer and close before reading (a refused caller): that answer is
            // still to be read, and receive() then sees the end.
            if (errno == EPIPE || errno == ECONNRESET) return;
            throw Error(ErrorKind::sandbox_unavailable, errno_text("the mcpwarden agent went away", errno));
        }
        first = false;
        off += static_cast<std::size_t>(n);
    }
}

std::optional<json> AgentClient::receive(std::vector<UniqueFd>* fds, int timeout_ms) {
    for (;;) {
        auto nl = buf_.find('\n');
        if (nl != std::string::npos) {
            std::string line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            if (fds) {
                for (auto& f : pending_fds_) fds->push_back(std::move(f));
            }
            pending_fds_.clear();
            json j = json::parse(line, nullptr, false);
            if (j.is_discarded()) throw Error(ErrorKind::internal, "the agent sent a line that is not JSON");
            return j;
        }
        if (timeout_ms >= 0) {
            pollfd p{fd_.get(), POLLIN, 0};
            int rc = ::poll(&p, 1, timeout_ms);
            if (rc == 0) return std::nullopt;
            if (rc < 0 && errno != EINTR) throw Error(ErrorKind::internal, errno_text("poll", errno));
            if (rc < 0) continue;
        }
        char data[65536];
        iovec iov{data, sizeof data};
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            eof_ = true;
            return std::nullopt;
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int f;
                std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                pending_fds_.emplace_back(f);
            }
        }
        buf_.append(data, static_cast<std::size_t>(n));
    }
}

namespace {

// Whether `m` is the final answer to request `id`. An error with id null answers the
// connection, not one request (the agent refused the caller as it connected): every request's.
bool answers(const json& m, const json& id) {
    if (!m.contains("ok")) return false;
    return m["id"] == id || (m["id"].is_null() && m["ok"] == false);
}

}  // namespace

json AgentClient::result(const json& id) {
    for (;;) {
        auto m = receive();
        if (!m) throw Error(ErrorKind::sandbox_unavailable, "the mcpwarden agent closed the connection");
        if (!answers(*m, id)) continue;
        if ((*m)["ok"] == true) return m->value("result", json::object());
        throw error_from_json(m->value("error", json::object()));
    }
}

Error error_from_json(const json& error) {
    std::string kind = error.value("kind", "internal");
    ErrorKind k = ErrorKind::internal;
    for (int i = 0; i <= static_cast<int>(ErrorKind::internal); ++i) {
        if (to_string(static_cast<ErrorKind>(i)) == kind) k = static_cast<ErrorKind>(i);
    }
    json details = error;
    details.erase("kind");
    details.erase("message");
    return Error(k, error.value("message", "the agent answered with an error"), details);
}

std::optional<AgentClient> agent_for_cli(const std::string& flag) {
    bool asked = !flag.empty() || (std::getenv(kAgentSocketEnv) && *std::getenv(kAgentSocketEnv));
    if (::geteuid() == 0 && !asked) return std::nullopt;
    std::string path = agent_socket_path(flag);
    auto client = AgentClient::connect(path);
    if (!client) {
        throw Error(ErrorKind::sandbox_unavailable,
                    "no mcpwarden agent listens on " + path +
                        ": start one as root (mcpwarden agent --config FILE, or systemctl start mcpwarden-agent), "
                        "point --agent or $" + kAgentSocketEnv + " at its socket, or run this command as root",
                    {{"socket", path}});
    }
    return client;
}

json agent_run(AgentClient& client, const json& request) {
    sigset_t set, old;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
    ::sigprocmask(SIG_BLOCK, &set, &old);
    struct Restore {
        sigset_t mask;
        ~Restore() { ::sigprocmask(SIG_SETMASK, &mask, nullptr); }
    } restore{old};
    UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    const int stdio[3] = {0, 1, 2};
    client.send(request, stdio);
    const json& id = request["id"];
    std::string sandbox;
    int pending = 0;  // a signal that came before the sandbox had a name
    bool queued = false;
    bool killed = false;
    auto kill = [&](int sig) {
        if (killed || sandbox.empty()) return;
        killed = true;
        client.send({{"v", 1}, {"id", "kill"}, {"op", "kill"}, {"sandbox", sandbox}, {"signal", sig}});
    };
    for (;;) {
        if (pending && queued) {
            // Still waiting for a slot: leaving drops the request (nothing ran).
            return {{"report", {{"status", "interrupted"}, {"signal", pending}, {"exit_code", nullptr},
                                {"sandbox", nullptr}, {"policy", request.value("policy", "")}}},
                    {"exit_code", 128 + pending}};
        }
        pollfd p[2] = {{client.fd(), POLLIN, 0}, {sfd.get(), POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw Error(ErrorKind::internal, errno_text("poll", errno));
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si {};
            while (::read(sfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                if (sandbox.empty()) pending = static_cast<int>(si.ssi_signo);
                else kill(static_cast<int>(si.ssi_signo));
            }
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        // Drain every message that is there.
        while (auto m = client.receive(nullptr, 0)) {
            if (m->value("event", "") == "queued" && (*m)["id"] == id) {
                queued = true;
                if (pending) break;
            }
            if (m->value("event", "") == "started" && (*m)["id"] == id) {
                queued = false;
                sandbox = m->value("sandbox", "");
                if (pending) kill(pending);
                continue;
            }
            if (!answers(*m, id)) continue;  // the kill's answer, queue events
            if ((*m)["ok"] == true) return m->value("result", json::object());
            throw error_from_json(m->value("error", json::object()));
        }
        if (pending && queued) continue;  // answered at the top of the loop
        if (client.eof() || (p[0].revents & (POLLHUP | POLLERR)))
            throw Error(ErrorKind::sandbox_unavailable, "the mcpwarden agent closed the connection before the sandbox ended");
    }
}

json agent_sandbox_request(const std::string& op, const CliSandboxArgs& a) {
    if (a.policy.empty())
        throw Error(ErrorKind::usage, "through the agent, --policy NAME is required (a policy of the agent's policy directory)");
    if (is_policy_path(a.policy))
        throw Error(ErrorKind::usage, "through the agent, --policy names a policy of the agent's policy directory, not a file: " +
                                          a.policy);
    json req = {{"v", 1}, {"id", 1}, {"op", op}, {"policy", a.policy}, {"command", a.command}};
    json env = json::array();
    for (const auto& e : a.env) {
        if (e.find('=') != std::string::npos) env.push_back(e);
        else if (const char* v = std::getenv(e.c_str())) env.push_back(e + "=" + v);
    }
    if (!env.empty()) req["env"] = env;
    json source = json::object();
    for (char** e = environ; e && *e; ++e) {
        std::string kv = *e;
        auto eq = kv.find('=');
        if (eq != std::string::npos && eq > 0) source[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    req["source_env"] = source;
    json limits = json::object();
    if (!a.memory.empty()) limits["memory"] = a.memory;
    if (!a.pids.empty()) {
        if (a.pids.find_first_not_of("0123456789") != std::string::npos || a.pids.size() > 18)
            throw Error(ErrorKind::usage, "--pids " + a.pids + ": must be a whole number above 0");
        limits["pids"] = std::stoull(a.pids);
    }
    if (!a.cpu.empty()) limits["cpu"] = a.cpu;
    if (!a.timeout.empty()) limits["timeout"] = a.timeout;
    if (!limits.empty()) req["limits"] = limits;
    return req;
}

void refuse_standalone_flags(std::initializer_list<std::pair<const char*, bool>> given) {
    for (const auto& [flag, set] : given) {
        if (set)
            throw Error(ErrorKind::usage, std::string(flag) +
                                              " is not available through the agent (its configuration decides); "
                                              "run as root without --agent for a standalone run");
    }
}

}  // namespace mcpwarden
