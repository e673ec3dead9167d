// SPDX-License-Identifier: Apache-2.0
#include "agent_server.h"

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "attachment.h"
#include "cgroup.h"
#include "command_pin.h"
#include "egress_extension.h"
#include "error.h"
#include "mcp_proxy.h"
#include "policy_dir.h"
#include "process.h"
#include "workspace.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kThreadStack = 256 * 1024;  // a sandbox thread: epoll loop and relays (64 KiB buffer)
// Audit slots the agent's sandboxes share: 8 ring buffers of 256 KiB hold about 26,000 denials
// between two reads of the serving thread.
constexpr std::size_t kSharedEventSlots = 8;
constexpr std::size_t kMaxFdsPerMessage = 8;
// Answers and events queued for one connection that does not read: above this, events are
// dropped (and counted) and requests are no longer read until the queue is below half.
constexpr std::size_t kMaxQueuedOutput = 4 << 20;
// Descriptors received without their request's newline yet: a request takes at most 3.
constexpr std::size_t kMaxPendingFds = 3;

// Audit lines of every sandbox come here (and to the configured file).
class ForwardSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit ForwardSink(std::function<void(std::string)> fn) : fn_(std::move(fn)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        fn_(std::string(msg.payload.data(), msg.payload.size()));
    }
    void flush_() override {}

private:
    std::function<void(std::string)> fn_;
};

// Ties a hosted sandbox to its record: reports its start, and takes kill requests.
class AgentHook : public SandboxExtension {
public:
    AgentHook(Agent& agent, std::shared_ptr<Agent::Record> rec) : agent_(agent), rec_(std::move(rec)) {}

    void before_spawn(Sandbox& sandbox) override {
        auto name = sandbox.cgroup().name();
        auto paths = sandbox.cgroup().paths();
        auto rec = rec_;
        agent_.post([rec, name, paths] {
            rec->name = name;
            rec->cgroup_paths = paths;
        });
    }

    void after_spawn(Sandbox& sandbox, int, int, int) override {
        sandbox_ = &sandbox;
        int fd = rec_->control.get();
        sandbox.loop().add(fd, EPOLLIN, [this, fd](std::uint32_t) {
            std::uint64_t n;
            (void)!::read(fd, &n, sizeof n);
            check();
        });
        watching_ = true;
        if (started) started(sandbox.child_pid());
        check();  // a kill that came before the server existed
    }

    void on_end(Sandbox& sandbox, RunReport&) override {
        if (watching_) sandbox.loop().remove(rec_->control.get());
        watching_ = false;
    }

    std::function<void(pid_t)> started;  // runs on the sandbox thread

private:
    void check() {
        int sig = rec_->kill_signal.load();
        if (sig > 0 && sandbox_) sandbox_->interrupt(sig);
    }

    Agent& agent_;
    std::shared_ptr<Agent::Record> rec_;
    Sandbox* sandbox_ = nullptr;
    bool watching_ = false;
};

PeerIdentity peer_of(int fd) {
    PeerIdentity p;
    struct ucred cred {};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) throw Error(ErrorKind::internal, errno_text("SO_PEERCRED", errno));
    p.uid = cred.uid;
    p.gid = cred.gid;
    p.pid = cred.pid;
    std::vector<char> buf(16384);
    struct passwd pw {}, *pwp = nullptr;
    if (::getpwuid_r(p.uid, &pw, buf.data(), buf.size(), &pwp) == 0 && pwp) p.user = pwp->pw_name;
    std::vector<gid_t> gids(64);
    int n = static_cast<int>(gids.size());
    if (!p.user.empty()) {
        if (::getgrouplist(p.user.c_str(), p.gid, gids.data(), &n) < 0) {
            gids.resize(static_cast<std::size_t>(n));
            ::getgrouplist(p.user.c_str(), p.gid, gids.data(), &n);
        }
        gids.resize(static_cast<std::size_t>(std::max(n, 0)));
    } else {
        gids = {p.gid};
    }
    for (gid_t g : gids) {
        struct group gr {}, *grp = nullptr;
        std::string name;
        if (::getgrgid_r(g, &gr, buf.data(), buf.size(), &grp) == 0 && grp) name = grp->gr_name;
        p.groups.emplace_back(g, name);
    }
    return p;
}

std::optional<std::uint64_t> read_u64(const std::string& path) {
    std::string s;
    if (!read_file(path, s)) return std::nullopt;
    try {
        return std::stoull(s);
    } catch (...) {
        return std::nullopt;
    }
}

json limits_json(const Limits& l) {
    json j = json::object();
    j["memory_bytes"] = l.memory_bytes ? json(*l.memory_bytes) : json(nullptr);
    j["pids"] = l.pids ? json(*l.pids) : json(nullptr);
    j["cpu"] = l.cpu_millicores ? json(*l.cpu_millicores / 1000.0) : json(nullptr);
    j["timeout_ms"] = l.timeout ? json(l.timeout->count()) : json(nullptr);
    return j;
}

std::string state_name(Agent::Record::State s) {
    switch (s) {
        case Agent::Record::State::queued: return "queued";
        case Agent::Record::State::starting: return "starting";
        case Agent::Record::State::running: return "running";
        case Agent::Record::State::ended: return "ended";
    }
    return "?";
}

std::string iso_now() {
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    struct tm tm {};
    ::gmtime_r(&t, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

// The client's filesystem identity on this thread only, for the lookup of its command: what it
// cannot reach is "not an executable file", whether it exists or not (as root, the lookup would
// tell the client whether files exist in directories only root may search). setfsuid,
// setfsgid and the raw setgroups system call change the calling thread alone (glibc's
// setgroups would change every thread of the agent).
void check_command_as(uid_t uid, gid_t gid, const std::vector<gid_t>& groups, const std::string& command) {
    long n = ::syscall(SYS_getgroups, 0, nullptr);
    std::vector<gid_t> saved(static_cast<std::size_t>(std::max(n, 0L)));
    if (n < 0 || ::syscall(SYS_getgroups, saved.size(), saved.data()) != n)
        throw Error(ErrorKind::internal, errno_text("getgroups", errno));
    auto restore = [&] {
        ::syscall(SYS_setfsuid, 0);
        ::syscall(SYS_setfsgid, 0);
        ::syscall(SYS_setgroups, saved.size(), saved.data());
    };
    bool switched = ::syscall(SYS_setgroups, groups.size(), groups.data()) == 0;
    if (switched) {
        ::syscall(SYS_setfsgid, gid);
        ::syscall(SYS_setfsuid, uid);
        // setfsuid says nothing of a failure: read both back (-1 changes nothing).
        switched = static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) == uid &&
                   static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) == gid;
    }
    if (!switched) {
        int err = errno;
        restore();
        throw Error(ErrorKind::internal, errno_text("cannot take the client's identity to look up its command", err));
    }
    std::optional<Error> refused;
    try {
        resolve_executable(command, kSandboxPath);
    } catch (const Error& e) {
        refused = e;
    }
    restore();
    if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != 0)
        throw Error(ErrorKind::internal, "cannot return to the agent's own identity after the command lookup");
    if (refused) throw *refused;
}

Error unlisted_error(const PeerIdentity& peer) {
    return Error(ErrorKind::forbidden,
                 "uid " + std::to_string(peer.uid) + (peer.user.empty() ? "" : " (" + peer.user + ")") +
                     " may not use this agent: its configuration (clients:) does not list the user or one of its groups",
                 {{"uid", peer.uid}});
}

UniqueFd open_null() {
    UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!fd) throw Error(ErrorKind::internal, errno_text("open /dev/null", errno));
    return fd;
}

// %j: the message as the contents of a JSON string.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        std::string text(msg.payload.data(), msg.payload.size());
        std::string quoted = json(text).dump(-1, ' ', false, json::error_handler_t::replace);
        dest.append(quoted.data() + 1, quoted.data() + quoted.size() - 1);
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

}  // namespace

void use_json_logs() {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('j').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","pid":%P,"msg":"%j"})");
    spdlog::default_logger()->set_formatter(std::move(f));
}

// ---------------------------------------------------------------------------------------------
Agent::Agent(AgentConfig config)
    : config_(std::move(config)),
      admission_(Admission::Config{config_.limits.max_sandboxes, config_.limits.max_per_policy,
                                   config_.limits.queue_length, config_.limits.queue_timeout,
                                   config_.limits.max_per_client}) {
    if (config_.policy_dir.empty()) config_.policy_dir = default_policy_dir();
    add_op("create", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>& fds) { op_create(c, r, fds, false); });
    add_op("call", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>& fds) { op_create(c, r, fds, true); });
    add_op("list", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_list(c, r); });
    add_op("inspect", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_inspect(c, r); });
    add_op("kill", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_kill(c, r); });
    add_op("events", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_events(c, r); });
    add_op("reload", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_reload(c, r); });
    add_op("attach", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_attach(c, r); });
    add_op("detach", [this](Conn& c, ApiRequest& r, std::vector<UniqueFd>&) { op_detach(c, r); });

    std::vector<spdlog::sink_ptr> sinks;
    sinks.push_back(std::make_shared<ForwardSink>([this](std::string line) {
        post([this, line = std::move(line)] { on_audit_line(line); });
    }));
    if (!config_.audit.empty()) {
        // Every client's commands and refusals: readable by root and the file's group only.
        UniqueFd audit(::open(config_.audit.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0640));
        struct stat st {};
        if (audit && ::fstat(audit.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid())
            ::fchmod(audit.get(), st.st_mode & 0640);
        sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(config_.audit));
    }
    audit_ = std::make_shared<spdlog::logger>("audit", sinks.begin(), sinks.end());
    audit_->set_pattern("%v");
    audit_->set_level(spdlog::level::info);
    audit_->flush_on(spdlog::level::info);
}

Agent::~Agent() {
    attachments_.clear();  // a clean stop detaches what the agent attached (while loop_ exists)
    if (listen_) ::unlink(config_.socket.c_str());
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

std::string Agent::record_path(const std::string& name) const {
    return config_.state_dir + "/agent/sandboxes/" + name + ".json";
}

void Agent::recover() {
    // What a previous agent (or a crashed run) left: sandbox cgroups and workspaces whose owner
    // process is gone. Records of those sandboxes are dropped with them.
    CgroupPlan plan = plan_cgroups(CgroupLayout::detect(), config_.cgroup_root);
    int swept = sweep_stale_sandboxes(plan);
    // Then the pinned enforcement of those sandboxes (only once their cgroups are gone).
    sweep_stale_enforcement();
    sweep_stale_workspaces(config_.state_dir);
    std::error_code ec;
    fs::create_directories(config_.state_dir + "/agent/sandboxes", ec);
    // The records show every client's commands: root's alone.
    ::chmod((config_.state_dir + "/agent").c_str(), 0700);
    ::chmod((config_.state_dir + "/agent/sandboxes").c_str(), 0700);
    for (const auto& e : fs::directory_iterator(config_.state_dir + "/agent/sandboxes", ec)) {
        std::string name = e.path().stem().string();
        if (!sandbox_owner_alive(name)) fs::remove(e.path(), ec);
    }
    open_shared_events();
    recover_sandboxes();
    // A sandbox of a dead agent that no record adopted (that agent died between making its
    // cgroup and writing its record) is nobody's: it goes, with whatever runs in it, and then its
    // pinned enforcement. Another running agent's sandboxes have a live owner and stay.
    auto orphan = [this](const std::string& n) {
        if (n.size() < 2 || n.compare(n.size() - 2, 2, "-a") != 0) return false;
        if (sandbox_owner_alive(n.substr(0, n.size() - 2))) return false;
        for (const auto& [ticket, rec] : records_) {
            if (rec->name == n) return false;
        }
        return true;
    };
    int removed = sweep_sandboxes(plan, orphan);
    std::vector<std::string> pinned;
    for (const auto& e : fs::directory_iterator(sandbox_pin_root(), ec)) pinned.push_back(e.path().filename().string());
    for (const auto& n : pinned) {
        if (orphan(n)) sweep_enforcement_of(n);
    }
    if (removed > 0) spdlog::info("recovered: removed {} sandbox(es) of a previous agent that had no record", removed);
    recover_attachments();
    if (swept > 0) spdlog::info("recovered: removed {} sandbox(es) left by a previous agent", swept);
}

void Agent::open_shared_events() {
    if (shared_events_) return;
    // Tagged by the socket, so a restarted agent on the same socket takes over the slots (and
    // the pending events) of its predecessor, which its adopted sandboxes still write into.
    char tag[48];
    std::snprintf(tag, sizeof tag, "agent:%016zx", std::hash<std::string>{}(config_.socket));
    try {
        shared_events_ = std::make_unique<SharedEventRing>(BpfObjects::open(), tag, kSharedEventSlots);
    } catch (const Error& e) {
        // Without BPF no sandbox can start anyway; each would then claim a slot of its own.
        spdlog::warn("agent: no shared audit ring buffer: {}", e.what());
    }
}

void Agent::post(std::function<void()> fn) {
    {
        std::lock_guard<std::mutex> lock(mailbox_mutex_);
        mailbox_.push_back(std::move(fn));
    }
    std::uint64_t one = 1;
    (void)!::write(mailbox_fd_.get(), &one, sizeof one);
}

void Agent::drain_mailbox() {
    std::uint64_t n;
    (void)!::read(mailbox_fd_.get(), &n, sizeof n);
    for (;;) {
        std::vector<std::function<void()>> work;
        {
            std::lock_guard<std::mutex> lock(mailbox_mutex_);
            work.swap(mailbox_);
        }
        if (work.empty()) return;
        for (auto& fn : work) {
            try {
                fn();
            } catch (const std::exception& e) {
                spdlog::error("agent: {} (continuing)", e.what());
            }
        }
    }
}

void Agent::listen_socket() {
    const std::string& path = config_.socket;
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw Error(ErrorKind::usage, "socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw Error(ErrorKind::usage, path + " exists and is not a socket; refusing to replace it");
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
            throw Error(ErrorKind::usage, "an agent already listens on " + path);
        ::unlink(path.c_str());  // left by an agent that is gone
    }
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listen_) throw Error(ErrorKind::internal, errno_text("socket", errno));
    mode_t old = ::umask(0177);
    int rc = ::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old);
    if (rc != 0) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot listen on " + path, errno));
    ::chmod(path.c_str(), config_.socket_mode);
    if (::listen(listen_.get(), 1024) != 0) throw Error(ErrorKind::internal, errno_text("listen", errno));
}

namespace {

// The answer to a connection taken while out of descriptors. Built before it is needed, so
// that moment does no more than accept, send and close (under the sanitizers even a first
// check of an object's type needs a descriptor).
const std::string& out_of_descriptors_reply() {
    static const std::string msg =
        api_error(nullptr, Error(ErrorKind::busy, "the agent is out of file descriptors; try again later")).dump() + "\n";
    return msg;
}

}  // namespace


int Agent::serve() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
    // Blocked before any sandbox thread exists, so every thread inherits the mask and only
    // this signalfd takes them.
    ::pthread_sigmask(SIG_BLOCK, &set, &old_mask_);
    signals_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    mailbox_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    queue_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    idle_timer_ = make_timer(std::clamp<std::chrono::milliseconds>(config_.limits.idle_timeout / 4,
                                                                   std::chrono::milliseconds(100), std::chrono::seconds(1)),
                             true);
    if (!signals_ || !mailbox_fd_ || !queue_timer_ || !idle_timer_) throw Error(ErrorKind::internal, errno_text("agent setup", errno));
    // Every sandbox holds a few dozen descriptors here (stdio, cgroups, its loop, its resolver's
    // sockets): the soft limit of 1024 would cap the agent near 40 sandboxes.
    // Root may raise the hard limit too (up to fs.nr_open); else the soft one goes to the hard.
    struct rlimit nofile {};
    if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        struct rlimit want {std::max<rlim_t>(nofile.rlim_max, 1 << 17), std::max<rlim_t>(nofile.rlim_max, 1 << 17)};
        if (::setrlimit(RLIMIT_NOFILE, &want) != 0 && nofile.rlim_cur < nofile.rlim_max) {
            nofile.rlim_cur = nofile.rlim_max;
            ::setrlimit(RLIMIT_NOFILE, &nofile);
        }
    }
    listen_socket();
    spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    // Low descriptor numbers for the servers' spawns, taken while the table is small: a server
    // cloned later copies only the table below them, not every sandbox's descriptors.
    reserve_spawn_descriptors(8);
    (void)out_of_descriptors_reply();  // built now: out of descriptors, the agent only sends it
    loop_.add(listen_.get(), EPOLLIN, [this](std::uint32_t) { on_accept(); });
    if (shared_events_) {
        loop_.add(shared_events_->events_fd(), EPOLLIN, [this](std::uint32_t) { shared_events_->consume(); });
    }
    if (!config_.metrics.empty()) metrics_listen();
    loop_.add(mailbox_fd_.get(), EPOLLIN, [this](std::uint32_t) { drain_mailbox(); });
    loop_.add(queue_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_queue_timer(); });
    loop_.add(idle_timer_.get(), EPOLLIN, [this](std::uint32_t) { on_idle_timer(); });
    loop_.add(signals_.get(), EPOLLIN, [this](std::uint32_t) {
        struct signalfd_siginfo si {};
        while (::read(signals_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            if (stopping_) continue;
            if (si.ssi_signo == SIGHUP) {  // live policy update of every running sandbox
                reload_policies("");
                continue;
            }
            spdlog::info("agent: signal {}: ending every sandbox and stopping", si.ssi_signo);
            stopping_ = true;
        }
    });
    spdlog::info("agent: listening on {} (policies from {}, at most {} sandboxes, queue {})", config_.socket,
                 config_.policy_dir, config_.limits.max_sandboxes, config_.limits.queue_length);
    bool shutdown_started = false;
    auto deadline = Clock::now();
    while (true) {
        try {
            loop_.run_once(stopping_ ? 100 : -1);
        } catch (const std::exception& e) {
            // One failed callback must not end the agent under its running sandbox threads.
            spdlog::error("agent: {} (continuing)", e.what());
        }
        if (!stopping_) continue;
        if (!shutdown_started) {
            shutdown_started = true;
            deadline = Clock::now() + std::chrono::seconds(20);
            loop_.remove(listen_.get());
            listen_.reset();
            ::unlink(config_.socket.c_str());
            if (metrics_listen_) {
                loop_.remove(metrics_listen_.get());
                metrics_listen_.reset();
                if (config_.metrics[0] == '/') ::unlink(config_.metrics.c_str());
            }
            // Queued requests are answered; running sandboxes are ended like a run's are on
            // SIGTERM, and their reports go to their clients.
            for (auto& [ticket, rec] : records_) {
                if (rec->state == Record::State::queued) {
                    admission_.cancel(ticket);
                    post([this, r = rec] {
                        on_ended(r, api_error(r->request_id, Error(ErrorKind::sandbox_unavailable, "the agent is stopping")), "refused");
                    });
                } else {
                    rec->kill_signal = SIGTERM;
                    std::uint64_t one = 1;
                    if (rec->control) (void)!::write(rec->control.get(), &one, sizeof one);
                }
            }
        }
        if (threads_.load() == 0) {
            drain_mailbox();
            for (auto& [id, c] : conns_) flush(*c);
            break;
        }
        if (Clock::now() > deadline) {
            spdlog::error("agent: {} sandbox thread(s) did not end in time", threads_.load());
            break;
        }
    }
    return 0;
}

void Agent::on_accept() {
    for (;;) {
        int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare_fd_) {
            // Out of descriptors: the connection would stay pending and the listener readable
            // (a busy loop). Give up the spare one to take the connection and refuse it.
            spare_fd_.reset();
            fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                const std::string& msg = out_of_descriptors_reply();
                (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                ::close(fd);
                spdlog::warn("agent: out of file descriptors ({} connections): refused a connection", conns_.size());
            }
            spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (fd >= 0) continue;
            return;
        }
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        if (conns_.size() >= config_.limits.max_connections) {
            static const std::string msg =
                api_error(nullptr, Error(ErrorKind::busy, "the agent has too many connections")).dump() + "\n";
            (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            ::close(fd);
            continue;
        }
        auto conn = std::make_unique<Conn>();
        conn->id = next_conn_++;
        conn->fd.reset(fd);
        try {
            conn->peer = peer_of(fd);
        } catch (const Error& e) {
            spdlog::warn("agent: {}", e.what());
            continue;
        }
        // Nothing a user the configuration does not list sends is served: it is answered and
        // closed now, so it holds no connection (however many it opens, a listed client is
        // still taken in).
        if (!peer_known(config_, conn->peer)) {
            audit_forbidden(*conn, "connect", "", "the agent's configuration does not list this user or its groups");
            refuse_connection(*conn, unlisted_error(conn->peer));
            continue;
        }
        uid_t uid = conn->peer.uid;
        if (uid != 0 && conns_per_uid_[uid] >= config_.limits.max_connections_per_uid) {
            spdlog::warn("agent: uid {} (pid {}) holds {} connections already (limits.max_connections_per_uid); refused one",
                         uid, conn->peer.pid, conns_per_uid_[uid]);
            refuse_connection(*conn, Error(ErrorKind::busy,
                                           "uid " + std::to_string(uid) + " holds " +
                                               std::to_string(config_.limits.max_connections_per_uid) +
                                               " connections to the agent already (its limits.max_connections_per_uid); "
                                               "close one or use several requests per connection",
                                           {{"limit_name", "max_connections_per_uid"},
                                            {"limit", config_.limits.max_connections_per_uid}}));
            continue;
        }
        ++conns_per_uid_[uid];
        std::uint64_t id = conn->id;
        Conn* c = conn.get();
        conns_[id] = std::move(conn);
        c->interest = EPOLLIN | EPOLLRDHUP;
        loop_.add(fd, c->interest, [this, id, c](std::uint32_t ev) {
            if (ev & EPOLLOUT) on_writable(*c);
            if (!conns_.count(id)) return;
            if (ev & (EPOLLHUP | EPOLLERR)) c->input_paused = false;  // read what is left, to its end
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR)) on_readable(*c);
            // Both ways closed (not a half-close): nobody reads the answers any more.
            if (conns_.count(id) && (ev & (EPOLLHUP | EPOLLERR))) close_conn(id);
        });
    }
}

void Agent::on_readable(Conn& conn) {
    std::uint64_t id = conn.id;
    // One read (at most 64 KiB of requests) per readiness: the loop then serves the other
    // connections, the timers and the signals before this one again (it stays readable), so
    // a client streaming requests delays neither another client nor a SIGTERM.
    if (!conn.read_eof && !conn.input_paused && !read_once(conn)) return;
    if (conn.read_eof) {
        if (!conn.in.empty() && !conn.skipping && !conn.closing) {
            reply(conn, api_error(nullptr, {{"kind", "input_invalid"},
                                            {"message", "the request was truncated (the connection ended before its newline)"}}));
        }
        conn.in.clear();
        conn.closing = true;
        flush(conn);
        // Only the answers (and the reports of its sandboxes, for a half-closed client) are left
        // to write: no more watching for input (it stays readable at end of file).
        if (conns_.count(id)) close_if_done(conn);
        if (conns_.count(id)) update_interest(conn);
    }
}

// One recvmsg on the connection, and the whole lines it completed served in order; false when
// serving one ended the connection (conn is gone).
bool Agent::read_once(Conn& conn) {
    std::uint64_t id = conn.id;
    char buf[65536];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n = ::recvmsg(conn.fd.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) conn.read_eof = true;
        return true;
    }
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int f;
                std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                fds.emplace_back(f);
            }
        }
    }
    if (!fds.empty()) conn.fd_batches.emplace_back(conn.in_base + conn.in.size(), std::move(fds));
    if (n == 0) {
        conn.read_eof = true;
        return true;
    }
    conn.in.append(buf, static_cast<std::size_t>(n));
    // Whole lines, in order.
    std::size_t start = 0;
    for (;;) {
        auto nl = conn.in.find('\n', start);
        if (nl == std::string::npos) break;
        std::vector<UniqueFd> line_fds;
        std::uint64_t end = conn.in_base + nl;
        while (!conn.fd_batches.empty() && conn.fd_batches.front().first <= end) {
            auto& batch = conn.fd_batches.front().second;
            if (line_fds.empty()) line_fds = std::move(batch);  // further batches: closed
            conn.fd_batches.pop_front();
        }
        if (conn.skipping) {
            conn.skipping = false;  // the end of an oversized line, already answered
        } else {
            handle_line(conn, std::string_view(conn.in).substr(start, nl - start), line_fds);
            if (!conns_.count(id)) return false;
            if (conn.closing) break;  // refused for good: the rest is not read
        }
        start = nl + 1;
    }
    if (conn.closing) {
        conn.read_eof = true;
        conn.drop = true;
        conn.in.clear();
        conn.fd_batches.clear();
        return true;
    }
    conn.in.erase(0, start);
    conn.in_base += start;
    if (conn.in.size() > config_.limits.max_request_bytes) {
        if (!conn.skipping) {
            auto parse = parse_api_request(conn.in, config_.limits.max_request_bytes);
            reply(conn, api_error(nullptr, parse.error));
            conn.skipping = true;
        }
        conn.in_base += conn.in.size();
        conn.in.clear();
        conn.fd_batches.clear();
    }
    std::size_t pending = 0;
    for (const auto& [at, batch] : conn.fd_batches) pending += batch.size();
    if (pending > kMaxPendingFds) {
        // More than a request takes, and no newline: descriptors piling up in the agent.
        spdlog::warn("agent: uid {} (pid {}) sent {} file descriptors without a request; closing its connection",
                     conn.peer.uid, conn.peer.pid, pending);
        reply(conn, api_error(nullptr, Error(ErrorKind::input_invalid,
                                             "more file descriptors than a request takes (3) came without a "
                                             "request line; the connection is closed")));
        conn.closing = true;
        conn.drop = true;
        conn.read_eof = true;
        conn.fd_batches.clear();
    }
    return true;
}

void Agent::handle_line(Conn& conn, std::string_view line, std::vector<UniqueFd>& fds) {
    if (line.empty() || line == "\r") return;  // blank lines are keep-alives
    ApiParse parse = parse_api_request(line, config_.limits.max_request_bytes);
    if (!parse.request) {
        spdlog::debug("agent: bad request from uid {}: {}", conn.peer.uid, parse.error.value("message", ""));
        reply(conn, api_error(parse.id, parse.error));
        return;
    }
    ApiRequest& r = *parse.request;
    conn.idle_since = Clock::now();
    auto it = ops_.find(r.op);
    if (it == ops_.end()) {
        reply_error(conn, r.id, Error(ErrorKind::input_invalid, "op " + r.op + " is not served by this agent"));
        return;
    }
    if (stopping_ && (r.op == "create" || r.op == "call" || r.op == "attach")) {
        // Nothing new while the sandboxes are being ended: it would outlive the agent.
        reply_error(conn, r.id, Error(ErrorKind::sandbox_unavailable, "the agent is stopping"));
        return;
    }
    try {
        it->second(conn, r, fds);
    } catch (const Error& e) {
        reply_error(conn, r.id, e);
    } catch (const std::exception& e) {
        reply_error(conn, r.id, Error(ErrorKind::internal, e.what()));
    }
}

void Agent::reply(Conn& conn, const json& message, std::vector<UniqueFd> fds) {
    if (auto ok = message.find("ok"); ok != message.end() && *ok == false)
        ++metrics_.errors[message["error"].value("kind", "internal")];
    Conn::Out out;
    out.bytes = message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    out.fds = std::move(fds);
    conn.out_bytes += out.bytes.size();
    conn.out.push_back(std::move(out));
    flush(conn);
    if (conn.out_bytes > kMaxQueuedOutput && !conn.input_paused) {
        // A client that asks and does not read: no more requests from it until it reads.
        conn.input_paused = true;
        update_interest(conn);
    }
}

void Agent::flush(Conn& conn) {
    while (!conn.out.empty()) {
        auto& o = conn.out.front();
        iovec iov{o.bytes.data() + o.off, o.bytes.size() - o.off};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
        if (!o.fds.empty() && o.off == 0) {
            msg.msg_control = cbuf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * o.fds.size());
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * o.fds.size());
            for (std::size_t i = 0; i < o.fds.size(); ++i) {
                int f = o.fds[i].get();
                std::memcpy(CMSG_DATA(c) + i * sizeof(int), &f, sizeof f);
            }
        }
        ssize_t n = ::sendmsg(conn.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            conn.out.clear();  // the peer is gone
            conn.read_eof = true;
            conn.closing = true;
            conn.drop = true;
            break;
        }
        o.fds.clear();
        o.off += static_cast<std::size_t>(n);
        conn.out_bytes -= static_cast<std::size_t>(n);
        if (o.off == o.bytes.size()) conn.out.pop_front();
    }
    if (conn.out.empty()) conn.out_bytes = 0;
    if (conn.input_paused && conn.out_bytes < kMaxQueuedOutput / 2) conn.input_paused = false;
    update_interest(conn);
}

void Agent::update_interest(Conn& conn) {
    std::uint32_t want = 0;
    if (!conn.read_eof && !conn.input_paused) want |= EPOLLIN | EPOLLRDHUP;
    if (!conn.out.empty()) want |= EPOLLOUT;
    if (want == conn.interest) return;
    conn.interest = want;
    loop_.modify(conn.fd.get(), want);
}

void Agent::on_writable(Conn& conn) {
    flush(conn);
    close_if_done(conn);
}

void Agent::close_if_done(Conn& conn) {
    if (conn.closing && conn.out.empty() && (conn.drop || conn.owned.empty())) close_conn(conn.id);
}

void Agent::close_conn(std::uint64_t id) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& conn = *it->second;
    // Sandboxes this connection created end with it, unless created with keep.
    for (auto ticket : conn.owned) {
        auto r = records_.find(ticket);
        if (r == records_.end()) continue;
        auto rec = r->second;
        rec->conn = 0;
        if (rec->state == Record::State::queued) {  // leaves the queue, keep or not
            admission_.cancel(ticket);
            records_.erase(r);
            continue;
        }
        if (rec->keep) continue;
        if (rec->state != Record::State::ended) {
            rec->kill_signal = SIGHUP;
            std::uint64_t one = 1;
            if (rec->control) (void)!::write(rec->control.get(), &one, sizeof one);
        }
    }
    loop_.remove(conn.fd.get());
    if (auto n = conns_per_uid_.find(conn.peer.uid); n != conns_per_uid_.end() && --n->second == 0) conns_per_uid_.erase(n);
    conns_.erase(it);
}

void Agent::refuse_connection(Conn& conn, const Error& why) {
    ++metrics_.errors[std::string(to_string(why.kind()))];
    std::string msg = api_error(nullptr, why).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    (void)!::send(conn.fd.get(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    // Its requests are not read: shut down both ways, the peer reads the answer, then the end.
    ::shutdown(conn.fd.get(), SHUT_RDWR);
}

void Agent::on_idle_timer() {
    std::uint64_t n;
    (void)!::read(idle_timer_.get(), &n, sizeof n);
    sweep_gone_attachments();
    auto now = Clock::now();
    std::vector<std::uint64_t> idle;
    for (const auto& [id, c] : conns_) {
        // Root's connections, and those waiting for a sandbox, events or their answers, are
        // not idle.
        if (c->peer.uid == 0 || !c->owned.empty() || c->events || !c->out.empty() || c->closing) continue;
        if (now - c->idle_since >= config_.limits.idle_timeout) idle.push_back(id);
    }
    for (auto id : idle) {
        auto it = conns_.find(id);
        spdlog::debug("agent: closing an idle connection of uid {} (pid {})", it->second->peer.uid, it->second->peer.pid);
        refuse_connection(*it->second,
                          Error(ErrorKind::input_invalid,
                                "no whole request within " + std::to_string(config_.limits.idle_timeout.count()) +
                                    " ms (the agent's limits.idle_timeout); the connection is closed",
                                {{"limit_name", "idle_timeout"}, {"limit", config_.limits.idle_timeout.count()}}));
        close_conn(id);
    }
}

void Agent::audit_forbidden(const Conn& conn, const std::string& op, const std::string& policy, const std::string& why) {
    json e = {{"time", iso_now()}, {"event", "forbidden"}, {"op", op}, {"uid", conn.peer.uid},
              {"gid", conn.peer.gid}, {"pid", conn.peer.pid}, {"user", conn.peer.user}, {"reason", why}};
    if (!policy.empty()) e["policy"] = policy;
    spdlog::warn("agent: refused {} by uid {} (pid {}){}: {}", op, conn.peer.uid, conn.peer.pid,
                 policy.empty() ? "" : " for policy " + policy, why);
    audit_->info(e.dump());
}

void Agent::broadcast(json event, const std::string& sandbox, long owner_uid) {
    for (auto& [id, c] : conns_) {
        if (!c->events) continue;
        if (c->peer.uid != 0 && static_cast<long>(c->peer.uid) != owner_uid) continue;
        if (!c->events_sandbox.empty() && c->events_sandbox != sandbox) continue;
        if (c->out_bytes > kMaxQueuedOutput) {
            ++c->events_dropped;  // a subscriber that does not keep up loses events, not the agent memory
            continue;
        }
        if (c->events_dropped > 0) {
            reply(*c, {{"v", kApiVersion}, {"id", c->events_id}, {"event", "dropped"}, {"count", c->events_dropped}});
            c->events_dropped = 0;
        }
        json m = event;
        m["v"] = kApiVersion;
        m["id"] = c->events_id;
        reply(*c, m);
    }
}

void Agent::on_audit_line(const std::string& line) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return;
    std::string sandbox = j.value("sandbox", "");
    long owner = -1;
    // A rate-limited sandbox's summary line carries the counts of the lines it stands for.
    auto counted = [&j] {
        std::map<std::string, std::uint64_t> c{{j.value("event", "egress_denied"), 1}};
        if (j.value("event", "") == "audit_suppressed" && j["by_event"].is_object())
            c = j["by_event"].get<std::map<std::string, std::uint64_t>>();
        return c;
    };
    if (auto n = by_name_.find(sandbox); n != by_name_.end()) {
        if (auto r = records_.find(n->second); r != records_.end()) {
            owner = static_cast<long>(r->second->owner_uid);
            for (const auto& [kind, n] : counted()) {
                r->second->denials[kind] += n;
                metrics_.denials[{r->second->policy, kind}] += n;
            }
        }
    } else if (attachment_named(sandbox)) {
        for (const auto& [kind, n] : counted()) {
            metrics_.denials[{j.value("policy", ""), kind}] += n;
            metrics_.attachment_denials[{sandbox, kind}] += n;
        }
    } else if (j.contains("uid") && j["uid"].is_number_unsigned()) {
        owner = j["uid"].get<long>();  // a refusal: the refused user sees it too
    }
    broadcast({{"event", "audit"}, {"audit", j}}, sandbox, owner);
}

std::shared_ptr<Agent::Record> Agent::find_visible(const Conn& conn, const std::string& name) {
    auto n = by_name_.find(name);
    if (n == by_name_.end()) return nullptr;
    auto r = records_.find(n->second);
    if (r == records_.end()) return nullptr;
    if (conn.peer.uid != 0 && r->second->owner_uid != conn.peer.uid) return nullptr;
    return r->second;
}

std::shared_ptr<const Policy> Agent::policy(const std::string& name) {
    // Read at each create: an edited policy applies to the next sandbox. (Live updates of
    // running sandboxes are the reload op's.)
    return std::make_shared<const Policy>(load_policy_ref(name, config_.policy_dir));
}

// ---------------------------------------------------------------------------------------------
void Agent::op_create(Conn& conn, ApiRequest& r, std::vector<UniqueFd>& fds, bool is_call) {
    SandboxRequest req = sandbox_request(r);
    std::optional<ApiCall> call;
    if (is_call) call = call_request(r);
    if (!peer_may_use(config_, conn.peer, req.policy)) {
        audit_forbidden(conn, r.op, req.policy, "policy not allowed for this user");
        throw Error(ErrorKind::forbidden,
                    "uid " + std::to_string(conn.peer.uid) + (conn.peer.user.empty() ? "" : " (" + conn.peer.user + ")") +
                        " may not run sandboxes under policy " + req.policy + " (the agent's clients: configuration)",
                    {{"uid", conn.peer.uid}, {"policy", req.policy}});
    }
    auto pol = policy(req.policy);
    check_command_pin(*pol, req.command);
    if (conn.peer.uid != 0 && !config_.allow_unpinned_secrets && !policy_secrets(*pol).empty() && !pol->command.pinned()) {
        audit_forbidden(conn, r.op, req.policy, "the policy hands out secrets without pinning its command");
        throw Error(ErrorKind::forbidden,
                    "policy " + req.policy + " hands its server secrets but does not pin its command (command:), so a "
                        "client could run any program with them; the agent refuses it for clients unless its "
                        "configuration sets allow_unpinned_secrets: true",
                    {{"policy", req.policy}});
    }
    auto rec = std::make_shared<Record>();
    rec->ticket = next_ticket_++;
    rec->policy = req.policy;
    rec->owner_uid = conn.peer.uid;
    rec->owner_pid = conn.peer.pid;
    rec->owner_gid = conn.peer.gid;
    for (const auto& [g, name] : conn.peer.groups) rec->owner_groups.push_back(g);
    rec->conn = conn.id;
    rec->request_id = r.id;
    rec->keep = req.keep;
    rec->is_call = is_call;
    rec->call = call;
    RunOptions& o = rec->options;
    o.policy = *pol;
    o.limits = effective_limits(pol->limits, req.limits, config_.default_limits);
    o.command = req.command;
    o.env_args = req.env;
    o.source_env = req.source_env;
    o.state_dir = config_.state_dir;
    o.cgroup_root = config_.cgroup_root;
    o.allow_degraded = config_.allow_degraded;
    o.hosted = true;
    o.client_uid = conn.peer.uid;  // the (policy, client) pair's own uid and cache
    o.uid_range = config_.uid_range;
    o.name = agent_sandbox_name();
    if (is_call || req.stdio == SandboxRequest::Stdio::null) {
        for (auto& s : rec->stdio) s = open_null();
    } else if (req.stdio == SandboxRequest::Stdio::pass) {
        if (fds.size() != 3)
            throw Error(ErrorKind::input_invalid,
                        "stdio \"pass\" needs exactly 3 file descriptors (stdin, stdout, stderr) sent with the request "
                        "(SCM_RIGHTS); got " + std::to_string(fds.size()),
                        {{"field", "stdio"}, {"observed", fds.size()}});
        for (int i = 0; i < 3; ++i) rec->stdio[i] = std::move(fds[static_cast<std::size_t>(i)]);
    } else {
        // Socket pairs: the server's ends stay here, the client's go back with "started".
        for (int i = 0; i < 3; ++i) {
            int sv[2];
            if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
                throw Error(ErrorKind::internal, errno_text("socketpair", errno));
            rec->stdio[i].reset(sv[0]);
            rec->returned.emplace_back(sv[1]);
            ::shutdown(sv[0], i == 0 ? SHUT_WR : SHUT_RD);
        }
    }
    o.stdin_fd = rec->stdio[0].get();
    o.stdout_fd = rec->stdio[1].get();
    o.stderr_fd = rec->stdio[2].get();
    if (!is_call) rec->options.policy.mcp.enabled = rec->options.policy.mcp.enabled || req.mcp;
    rec->control.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!rec->control) throw Error(ErrorKind::internal, errno_text("eventfd", errno));

    auto client = rec->owner_uid == 0 ? Admission::kNoClient : static_cast<Admission::Client>(rec->owner_uid);
    auto verdict = admission_.request(rec->ticket, rec->policy, Clock::now(), client);
    if (verdict == Admission::Verdict::client_busy) {
        throw Error(ErrorKind::busy,
                    "uid " + std::to_string(rec->owner_uid) + " has its share of " +
                        std::to_string(config_.limits.max_per_client) +
                        " sandboxes running or queued (the agent's limits.max_per_client); try again once one ended",
                    {{"limit_name", "max_per_client"}, {"limit", config_.limits.max_per_client},
                     {"observed", admission_.held_by(client)}});
    }
    if (verdict == Admission::Verdict::busy) {
        throw Error(ErrorKind::busy,
                    "the agent runs its maximum of sandboxes and its wait queue is full; try again later",
                    {{"running", admission_.running()}, {"queued", admission_.queued()},
                     {"max_sandboxes", config_.limits.max_sandboxes}, {"queue_length", config_.limits.queue_length}});
    }
    records_[rec->ticket] = rec;
    conn.owned.insert(rec->ticket);
    if (verdict == Admission::Verdict::queued) {
        reply(conn, api_event(r.id, "queued", {{"position", admission_.position(rec->ticket)},
                                               {"timeout_ms", config_.limits.queue_timeout.count()}}));
        arm_queue_timer();
        return;
    }
    start(rec);
}

void Agent::arm_queue_timer() {
    auto next = admission_.next_deadline();
    itimerspec its{};
    if (next) {
        auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*next - Clock::now()).count();
        if (left < 1000000) left = 1000000;
        its.it_value.tv_sec = left / 1000000000;
        its.it_value.tv_nsec = left % 1000000000;
    }
    ::timerfd_settime(queue_timer_.get(), 0, &its, nullptr);
}

void Agent::on_queue_timer() {
    std::uint64_t n;
    (void)!::read(queue_timer_.get(), &n, sizeof n);
    for (auto ticket : admission_.expire(Clock::now())) {
        auto it = records_.find(ticket);
        if (it == records_.end()) continue;
        auto rec = it->second;
        on_ended(rec, api_error(rec->request_id,
                                Error(ErrorKind::busy,
                                      "no sandbox slot freed within the queue timeout of " +
                                          std::to_string(config_.limits.queue_timeout.count()) + " ms; try again later",
                                      {{"queue_timeout_ms", config_.limits.queue_timeout.count()},
                                       {"max_sandboxes", config_.limits.max_sandboxes}})),
                 "busy");
    }
    arm_queue_timer();
}

void Agent::finish_admissions(const std::vector<Admission::Ticket>& tickets) {
    for (auto t : tickets) {
        auto it = records_.find(t);
        if (it != records_.end()) start(it->second);
    }
    arm_queue_timer();
}

void Agent::start(const std::shared_ptr<Record>& rec) {
    rec->state = Record::State::starting;
    threads_.fetch_add(1);
    struct Arg {
        Agent* agent;
        std::shared_ptr<Record> rec;
    };
    auto* arg = new Arg{this, rec};
    pthread_attr_t attr;
    ::pthread_attr_init(&attr);
    ::pthread_attr_setstacksize(&attr, kThreadStack);
    ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = ::pthread_create(&t, &attr, [](void* p) -> void* {
        std::unique_ptr<Arg> a(static_cast<Arg*>(p));
        a->agent->run_thread(std::move(a->rec));
        return nullptr;
    }, arg);
    ::pthread_attr_destroy(&attr);
    if (rc != 0) {
        delete arg;
        threads_.fetch_sub(1);
        on_ended(rec, api_error(rec->request_id, Error(ErrorKind::internal, errno_text("pthread_create", rc))), "refused");
    }
}

void Agent::run_thread(std::shared_ptr<Record> rec) {
    json final_message;
    std::string status;
    try {
        if (rec->owner_uid != 0)
            check_command_as(rec->owner_uid, rec->owner_gid, rec->owner_groups, rec->options.command.at(0));
        Sandbox sandbox(rec->options);
        auto egress = std::make_shared<EgressExtension>(sandbox.options().policy, false, audit_);
        egress->use_shared_events(shared_events_.get());
        sandbox.add_extension(egress);
        std::shared_ptr<McpCall> mcp_call;
        if (rec->is_call) {
            McpConfig mc = McpConfig::from_policy(rec->options.policy.mcp);
            if (rec->call->call_timeout) {
                mc.call_timeout = *rec->call->call_timeout;
                mc.tool_timeouts.clear();
            }
            mcp_call = std::make_shared<McpCall>(mc, rec->call->call);
            sandbox.add_extension(mcp_call);
        } else if (rec->options.policy.mcp.enabled) {
            sandbox.add_extension(std::make_shared<McpProxy>(McpConfig::from_policy(rec->options.policy.mcp)));
        }
        auto hook = std::make_shared<AgentHook>(*this, rec);
        hook->started = [this, rec, egress](pid_t pid) {
            post([this, rec, pid, egress] {
                rec->pid = pid;
                rec->egress = egress;
                on_started(rec);
            });
        };
        sandbox.add_extension(hook);
        RunReport report = sandbox.run();
        json result = report.to_json();
        status = report.status;
        if (mcp_call) {
            const CallOutcome& outcome = mcp_call->outcome();
            result = {{"outcome", outcome.to_json()}, {"exit_code", outcome.exit_code()}, {"report", report.to_json()}};
        } else {
            result = {{"report", result}, {"exit_code", report.process_exit_code()}};
        }
        final_message = api_result(rec->request_id, result);
    } catch (const Error& e) {
        status = "refused";
        final_message = api_error(rec->request_id, e);
    } catch (const std::exception& e) {
        status = "refused";
        final_message = api_error(rec->request_id, Error(ErrorKind::internal, e.what()));
    }
    post([this, rec, final_message = std::move(final_message), status] {
        on_ended(rec, final_message, status);
        threads_.fetch_sub(1);
    });
}

void Agent::on_started(const std::shared_ptr<Record>& rec) {
    if (rec->state == Record::State::ended) return;
    rec->state = Record::State::running;
    rec->started = Clock::now();
    ++metrics_.created;
    by_name_[rec->name] = rec->ticket;
    write_record(*rec);
    auto latency = std::chrono::duration_cast<std::chrono::microseconds>(rec->started - rec->created).count();
    json fields = {{"sandbox", rec->name}, {"pid", rec->pid}, {"policy", rec->policy},
                   {"limits", limits_json(rec->options.limits)}, {"create_to_exec_us", latency}};
    if (rec->conn) {
        if (auto c = conns_.find(rec->conn); c != conns_.end()) {
            if (!rec->returned.empty()) fields["stdio"] = "return";
            reply(*c->second, api_event(rec->request_id, "started", fields), std::move(rec->returned));
        }
    }
    rec->returned.clear();
    broadcast({{"event", "lifecycle"}, {"state", "started"}, {"sandbox", rec->name}, {"policy", rec->policy},
               {"pid", rec->pid}, {"uid", rec->owner_uid}, {"time", iso_now()}},
              rec->name, static_cast<long>(rec->owner_uid));
    spdlog::info("agent: sandbox {} started (policy {}, pid {}, for uid {})", rec->name, rec->policy, rec->pid, rec->owner_uid);
}

void Agent::on_ended(const std::shared_ptr<Record>& rec, json final_message, const std::string& status) {
    bool was_running = rec->state == Record::State::starting || rec->state == Record::State::running;
    rec->state = Record::State::ended;
    count_end(final_message, status);
    if (rec->conn) {
        if (auto c = conns_.find(rec->conn); c != conns_.end()) {
            c->second->owned.erase(rec->ticket);
            if (c->second->owned.empty()) c->second->idle_since = Clock::now();
            reply(*c->second, final_message);
            close_if_done(*c->second);
        }
    }
    if (!rec->name.empty()) {
        std::error_code ec;
        fs::remove(record_path(rec->name), ec);
        by_name_.erase(rec->name);
        broadcast({{"event", "lifecycle"}, {"state", "ended"}, {"status", status}, {"sandbox", rec->name},
                   {"policy", rec->policy}, {"uid", rec->owner_uid}, {"time", iso_now()}},
                  rec->name, static_cast<long>(rec->owner_uid));
    }
    records_.erase(rec->ticket);
    if (was_running) finish_admissions(admission_.release(rec->policy, rec->ticket));
}

void Agent::write_record(const Record& rec) {
    // For the next agent (recover()): what this sandbox is and who asked for it.
    json j = {{"sandbox", rec.name}, {"policy", rec.policy}, {"pid", rec.pid}, {"owner_uid", rec.owner_uid},
              {"owner_pid", rec.owner_pid}, {"keep", rec.keep}, {"cgroups", rec.cgroup_paths},
              {"limits", limits_json(rec.options.limits)}, {"command", rec.options.command},
              {"policy_file", rec.options.policy.source}, {"created", iso_now()}};
    if (!write_private_file(record_path(rec.name), j.dump() + "\n")) spdlog::warn("agent: cannot write {}", record_path(rec.name));
}

bool write_private_file(const std::string& path, const std::string& text) {
    // Root's alone (0600), replaced whole (rename); a link planted at the temporary name is
    // not followed.
    std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return false;
    bool ok = ::fchmod(fd.get(), 0600) == 0 && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
    fd.reset();
    if (ok) ok = ::rename(tmp.c_str(), path.c_str()) == 0;
    if (!ok) ::unlink(tmp.c_str());
    return ok;
}

json Agent::describe(const Record& rec, bool usage) const {
    json j = {{"sandbox", rec.name}, {"policy", rec.policy}, {"state", state_name(rec.state)}, {"uid", rec.owner_uid},
              {"pid", rec.pid}, {"keep", rec.keep}, {"call", rec.is_call},
              {"command", rec.options.command}, {"limits", limits_json(rec.options.limits)}};
    auto created = std::chrono::duration_cast<std::chrono::seconds>(rec.created_at.time_since_epoch()).count();
    j["created_unix"] = created;
    if (rec.pid > 0) {
        if (auto uid = process_uid(rec.pid)) {
            j["server_uid"] = *uid;
            j["server_user"] = user_name_of(*uid);
        }
    }
    if (rec.state == Record::State::running)
        j["running_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - rec.started).count();
    if (!usage) return j;
    json u = json::object();
    for (const auto& p : rec.cgroup_paths) {
        if (auto v = read_u64(p + "/memory.current")) u["memory_bytes"] = *v;
        else if (auto v1 = read_u64(p + "/memory.usage_in_bytes")) u["memory_bytes"] = *v1;
        if (auto v = read_u64(p + "/pids.current")) u["pids"] = *v;
        std::string stat;
        if (read_file(p + "/cpu.stat", stat)) {
            auto pos = stat.find("usage_usec ");
            if (pos != std::string::npos) u["cpu_usec"] = std::stoull(stat.substr(pos + 11));
        } else if (auto v = read_u64(p + "/cpuacct.usage")) {
            u["cpu_usec"] = *v / 1000;
        }
    }
    j["usage"] = u;
    j["denials"] = rec.denials;
    j["cgroups"] = rec.cgroup_paths;
    return j;
}

void Agent::op_list(Conn& conn, ApiRequest& r) {
    json list = json::array();
    for (const auto& [t, rec] : records_) {
        if (conn.peer.uid != 0 && rec->owner_uid != conn.peer.uid) continue;
        list.push_back(describe(*rec, false));
    }
    json attached = json::array();
    if (conn.peer.uid == 0)  // attachments are root's
        for (const auto& [id, att] : attachments_) attached.push_back(att->info());
    reply(conn, api_result(r.id, {{"sandboxes", list}, {"attachments", attached}, {"running", admission_.running()},
                                  {"queued", admission_.queued()}}));
}

void Agent::op_inspect(Conn& conn, ApiRequest& r) {
    std::string name = r.params["sandbox"];
    auto rec = find_visible(conn, name);
    if (!rec) throw Error(ErrorKind::usage, "no sandbox " + name + " (mcpwarden ps lists yours)", {{"sandbox", name}});
    reply(conn, api_result(r.id, describe(*rec, true)));
}

void Agent::op_kill(Conn& conn, ApiRequest& r) {
    std::string name = r.params["sandbox"];
    int sig = kill_signal(r);
    auto rec = find_visible(conn, name);
    if (!rec) throw Error(ErrorKind::usage, "no sandbox " + name + " (mcpwarden ps lists yours)", {{"sandbox", name}});
    rec->kill_signal = sig;
    std::uint64_t one = 1;
    (void)!::write(rec->control.get(), &one, sizeof one);
    spdlog::info("agent: uid {} killed sandbox {} (as signal {})", conn.peer.uid, name, sig);
    reply(conn, api_result(r.id, {{"sandbox", name}, {"signal", sig}}));
}

void Agent::op_events(Conn& conn, ApiRequest& r) {
    conn.events = true;
    conn.events_id = r.id;
    conn.events_sandbox = r.params.value("sandbox", "");
    reply(conn, api_result(r.id, {{"subscribed", true}}));
}

// ---------------------------------------------------------------------------------------------
void Agent::count_end(const json& final_message, const std::string& status) {
    ++metrics_.ends[status];
    const json* report = nullptr;
    if (auto r = final_message.find("result"); r != final_message.end() && r->is_object()) {
        if (auto rep = r->find("report"); rep != r->end() && rep->is_object()) report = &*rep;
    }
    if (!report) return;
    if (report->value("status", "") == "timeout") ++metrics_.timeouts;
    auto num = [](const json& j, const char* key) -> std::uint64_t {
        auto it = j.find(key);
        return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
    };
    metrics_.oom_kills += num(*report, "oom_kills");
    metrics_.events_lost += num(*report, "audit_events_lost");
    if (auto d = report->find("dns"); d != report->end() && d->is_object()) {
        metrics_.dns_answered += num(*d, "answered");
        metrics_.dns_refused += num(*d, "refused");
    }
}

std::string Agent::metrics_text() const {
    std::string out;
    auto esc = [](const std::string& v) {
        std::string e;
        for (char c : v) {
            if (c == '\\' || c == '"') e += '\\';
            if (c == '\n') {
                e += "\\n";
                continue;
            }
            e += c;
        }
        return e;
    };
    auto metric = [&](const char* name, const char* type, const char* help) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    auto value = [&](const std::string& name_labels, std::uint64_t v) { out += name_labels + " " + std::to_string(v) + "\n"; };
    metric("mcpwarden_sandboxes_running", "gauge", "Sandboxes admitted and not yet ended.");
    value("mcpwarden_sandboxes_running", admission_.running());
    metric("mcpwarden_sandboxes_queued", "gauge", "Requests waiting for a sandbox slot.");
    value("mcpwarden_sandboxes_queued", admission_.queued());
    metric("mcpwarden_sandboxes_created_total", "counter", "Sandboxes whose server started.");
    value("mcpwarden_sandboxes_created_total", metrics_.created);
    metric("mcpwarden_sandbox_ends_total", "counter", "Sandboxes and requests that ended, by status.");
    for (const auto& [status, n] : metrics_.ends) value("mcpwarden_sandbox_ends_total{status=\"" + esc(status) + "\"}", n);
    metric("mcpwarden_errors_total", "counter", "Error answers of the API, by kind (busy, forbidden, input_invalid, ...).");
    for (const auto& [kind, n] : metrics_.errors) value("mcpwarden_errors_total{kind=\"" + esc(kind) + "\"}", n);
    metric("mcpwarden_denials_total", "counter", "Audit events of running sandboxes, by policy and reason.");
    for (const auto& [key, n] : metrics_.denials)
        value("mcpwarden_denials_total{policy=\"" + esc(key.first) + "\",reason=\"" + esc(key.second) + "\"}", n);
    metric("mcpwarden_attachments", "gauge",
           "Policies attached to cgroups, by attachment name (a container's id for the OCI hook's), policy and container.");
    for (const auto& [id, att] : attachments_)
        value("mcpwarden_attachments{attachment=\"" + esc(att->name()) + "\",policy=\"" +
                  esc(att->info().value("policy", "")) + "\",container=\"" + esc(att->container()) + "\"}",
              1);
    metric("mcpwarden_attachment_denials_total", "counter", "Audit events of attachments, by attachment name and reason.");
    for (const auto& [key, n] : metrics_.attachment_denials)
        value("mcpwarden_attachment_denials_total{attachment=\"" + esc(key.first) + "\",reason=\"" + esc(key.second) +
                  "\"}",
              n);
    metric("mcpwarden_dns_queries_total", "counter", "DNS queries of ended sandboxes, by result.");
    value("mcpwarden_dns_queries_total{result=\"answered\"}", metrics_.dns_answered);
    value("mcpwarden_dns_queries_total{result=\"refused\"}", metrics_.dns_refused);
    metric("mcpwarden_oom_kills_total", "counter", "OOM kills in ended sandboxes.");
    value("mcpwarden_oom_kills_total", metrics_.oom_kills);
    metric("mcpwarden_timeouts_total", "counter", "Sandboxes ended by their wall-clock timeout.");
    value("mcpwarden_timeouts_total", metrics_.timeouts);
    metric("mcpwarden_audit_events_lost_total", "counter", "Audit events the kernel could not deliver (ended sandboxes).");
    value("mcpwarden_audit_events_lost_total", metrics_.events_lost);
    metric("mcpwarden_connections", "gauge", "API connections open.");
    value("mcpwarden_connections", conns_.size());
    return out;
}

void Agent::metrics_listen() {
    const std::string& where = config_.metrics;
    if (where[0] == '/') {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (where.size() >= sizeof addr.sun_path) throw Error(ErrorKind::usage, "metrics socket path too long: " + where);
        std::memcpy(addr.sun_path, where.c_str(), where.size() + 1);
        struct stat st {};
        if (::lstat(where.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(where.c_str());
        metrics_listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (::bind(metrics_listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot listen for metrics on " + where, errno));
        ::chmod(where.c_str(), 0644);
    } else {
        auto colon = where.rfind(':');
        std::string host = where.substr(0, colon), port = where.substr(colon + 1);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        addrinfo hints{}, *res = nullptr;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || !res)
            throw Error(ErrorKind::usage, "metrics: " + where + " is not a numeric HOST:PORT");
        metrics_listen_.reset(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        int one = 1;
        ::setsockopt(metrics_listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        int rc = ::bind(metrics_listen_.get(), res->ai_addr, res->ai_addrlen);
        int err = errno;
        ::freeaddrinfo(res);
        if (rc != 0) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot listen for metrics on " + where, err));
    }
    if (::listen(metrics_listen_.get(), 64) != 0) throw Error(ErrorKind::internal, errno_text("listen", errno));
    loop_.add(metrics_listen_.get(), EPOLLIN, [this](std::uint32_t) { on_metrics_accept(); });
}

void Agent::on_metrics_accept() {
    for (;;) {
        int fd = ::accept4(metrics_listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return;
        if (metrics_conns_.size() >= 64) {
            ::close(fd);
            continue;
        }
        metrics_conns_[fd] = UniqueFd(fd);
        // One scrape per connection: answer once the request (or its end) arrived.
        loop_.add(fd, EPOLLIN | EPOLLRDHUP, [this, fd](std::uint32_t) {
            char buf[4096];
            while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
            }
            std::string body = metrics_text();
            std::string response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
            (void)!::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            ::shutdown(fd, SHUT_WR);
            loop_.remove(fd);
            metrics_conns_.erase(fd);
        });
    }
}

}  // namespace mcpwarden
