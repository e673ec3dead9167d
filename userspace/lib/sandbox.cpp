// SPDX-License-Identifier: Apache-2.0
#include "sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include <spdlog/spdlog.h>

#include "cache_bound.h"
#include "command_pin.h"
#include "confinement.h"
#include "enforcer.h"
#include "env_refs.h"
#include "error.h"
#include "exit_codes.h"
#include "fs_view.h"
#include "relay.h"
#include "units.h"
#include "workspace.h"

namespace mcpwarden {
namespace {

// Gives the pages of this thread's stack below the caller (less a margin for what it calls
// next) back to the kernel; they come back zeroed if the stack grows there again. Nothing
// below the stack pointer is live, so this is safe at any call depth.
[[gnu::noinline]] void release_stack_below_here() {
    pthread_attr_t attr;
    if (::pthread_getattr_np(::pthread_self(), &attr) != 0) return;
    void* base = nullptr;
    size_t size = 0;
    ::pthread_attr_getstack(&attr, &base, &size);
    ::pthread_attr_destroy(&attr);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    volatile char here = 0;
    auto low = (reinterpret_cast<std::uintptr_t>(base) + page - 1) & ~(page - 1);
    auto high = (reinterpret_cast<std::uintptr_t>(&here) - 1024) & ~(page - 1);
    if (high > low) ::madvise(reinterpret_cast<void*>(low), high - low, MADV_DONTNEED);
}

using Clock = std::chrono::steady_clock;

// The host's account databases load their NSS modules on first use (libnss_systemd and its
// libraries: ~0.5 ms, a tenth of a sandbox start). A name no database can hold makes every
// module of the passwd and group chains load; the identity's own lookups are then quick.
void load_account_lookups() {
    std::vector<char> buf(4096);
    struct passwd pw {};
    struct passwd* p = nullptr;
    ::getpwnam_r("mcpwarden/", &pw, buf.data(), buf.size(), &p);
    struct group gr {};
    struct group* g = nullptr;
    ::getgrnam_r("mcpwarden/", &gr, buf.data(), buf.size(), &g);
}

// How long the server has to end after a signal to mcpwarden was passed on to it.
constexpr std::chrono::seconds kInterruptGrace{5};

bool is_inet_socket(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    int domain = 0;
    socklen_t len = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return false;
    return domain == AF_INET || domain == AF_INET6;
}

// Blocks the signals mcpwarden handles through a signalfd for the life of a run.
class SignalGuard {
public:
    SignalGuard() {
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
        ::sigprocmask(SIG_BLOCK, &set, &old_);
        fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!fd_) throw Error(ErrorKind::internal, errno_text("signalfd", errno));
    }
    ~SignalGuard() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
    int fd() const { return fd_.get(); }

private:
    sigset_t old_;
    UniqueFd fd_;
};

struct Pipe {
    UniqueFd read, write;
};

Pipe make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(ErrorKind::internal, errno_text("pipe2", errno));
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string read_secret(const std::string& path) {
    std::string value;
    if (!read_file(path, value)) {
        throw Error(ErrorKind::policy_invalid, errno_text("cannot read environment value from " + path, errno),
                    {{"file", path}});
    }
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
    return value;
}

nlohmann::json limits_json(const Limits& l) {
    nlohmann::json j = nlohmann::json::object();
    j["memory_bytes"] = l.memory_bytes ? nlohmann::json(*l.memory_bytes) : nlohmann::json(nullptr);
    j["pids"] = l.pids ? nlohmann::json(*l.pids) : nlohmann::json(nullptr);
    j["cpu"] = l.cpu_millicores ? nlohmann::json(*l.cpu_millicores / 1000.0) : nlohmann::json(nullptr);
    j["timeout_ms"] = l.timeout ? nlohmann::json(l.timeout->count()) : nlohmann::json(nullptr);
    j["open_files"] = l.open_files.value_or(Limits::kDefaultOpenFiles);
    return j;
}

}  // namespace

nlohmann::json RunReport::to_json() const {
    nlohmann::json j;
    j["status"] = status;
    j["exit_code"] = exit_code ? nlohmann::json(*exit_code) : nlohmann::json(nullptr);
    j["signal"] = signal ? nlohmann::json(*signal) : nlohmann::json(nullptr);
    j["duration_ms"] = duration.count();
    j["peak_memory_bytes"] = peak_memory ? nlohmann::json(*peak_memory) : nlohmann::json(nullptr);
    j["oom_kills"] = oom_kills;
    j["pids_limit_hits"] = pids_max_hits;
    j["limits"] = limits_json(limits);
    j["enforced_by"] = {{"memory", limits.memory_bytes ? std::string(mcpwarden::to_string(plan.memory)) : "none"},
                        {"pids", limits.pids ? std::string(mcpwarden::to_string(plan.pids)) : "none"},
                        {"cpu", limits.cpu_millicores ? std::string(mcpwarden::to_string(plan.cpu)) : "none"}};
    j["degraded"] = degraded;
    if (degraded) j["degraded_reasons"] = degraded_reasons;
    j["sandbox"] = sandbox;
    j["policy"] = policy;
    j["user"] = user;
    j["uid"] = uid;
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
    return j;
}

int RunReport::process_exit_code() const {
    if (status == "timeout") return exit_code::timeout;
    if (status == "memory_exceeded") return exit_code::memory_exceeded;
    if (status == "pids_exceeded") return exit_code::pids_exceeded;
    if (signal) return 128 + *signal;
    if (exit_code) return *exit_code;
    return exit_code::internal;
}

Sandbox::Sandbox(RunOptions options) : options_(std::move(options)) {}

Sandbox::~Sandbox() = default;

void Sandbox::check_enforceable(const CgroupPlan& plan, DegradedLimits& degraded,
                                RunReport& report) {
    auto refuse = [&](const std::string& what, const std::string& how) {
        if (!options_.allow_degraded) {
            throw Error(ErrorKind::sandbox_unavailable,
                        what + " was asked for, but " + how +
                            ". Refusing to run the server unconfined. Enable the controller "
                            "(or pass --allow-degraded to fall back to rlimits, which a server "
                            "can partly evade)",
                        {{"limit", what}});
        }
        report.degraded = true;
        report.degraded_reasons.push_back(what + ": " + how);
        spdlog::warn("DEGRADED: {}: {}; falling back to an rlimit, which is per process and weaker",
                     what, how);
    };
    const auto& l = options_.limits;
    if (l.memory_bytes && plan.memory == CgroupVersion::none) {
        refuse("a memory limit", "no memory controller is available (neither on the unified "
                                 "hierarchy nor a v1 memory hierarchy)");
        degraded.address_space = *l.memory_bytes;
    }
    if (l.pids && plan.pids == CgroupVersion::none) {
        refuse("a pids limit", "no pids controller is available (neither v2 nor v1)");
        degraded.nproc = *l.pids;
    }
    if (l.cpu_millicores && plan.cpu == CgroupVersion::none) {
        refuse("a cpu limit", "no cpu controller is available (neither v2 nor v1)");
    }
}

std::vector<std::string> Sandbox::build_env(const UserIdentity& user, const Workspace& ws) const {
    std::map<std::string, std::string> env;
    env["PATH"] = kSandboxPath;
    env["HOME"] = ws.home();
    env["TMPDIR"] = ws.tmp();
    env["USER"] = user.name;
    env["LOGNAME"] = user.name;
    // Package caches persist per integration (XDG for pip and uv; npm and Go need their own).
    env["XDG_CACHE_HOME"] = ws.cache();
    env["npm_config_cache"] = ws.cache() + "/npm";
    env["GOCACHE"] = ws.cache() + "/go-build";
    env["GOMODCACHE"] = ws.cache() + "/go-mod";
    const std::map<std::string, std::string> own = env;  // what ${NAME} in env.set refers to
    auto lookup = [this](const std::string& name) -> std::optional<std::string> {
        if (options_.source_env) {
            auto it = options_.source_env->find(name);
            if (it == options_.source_env->end()) return std::nullopt;
            return it->second;
        }
        if (const char* v = std::getenv(name.c_str())) return std::string(v);
        return std::nullopt;
    };
    for (const auto& name : options_.policy.env.pass) {
        if (auto v = lookup(name)) env[name] = *v;
    }
    for (const auto& [name, value] : options_.policy.env.set) {
        env[name] = value.file ? read_secret(*value.file) : expand_sandbox_references(value.value, own);
    }
    for (const auto& arg : options_.env_args) {
        auto eq = arg.find('=');
        if (eq == std::string::npos) {
            if (auto v = lookup(arg)) env[arg] = *v;
        } else {
            env[arg.substr(0, eq)] = arg.substr(eq + 1);
        }
    }
    // What the server does not get, said once: a server failing for want of an API key is
    // otherwise a mystery.
    std::vector<std::string> source;
    if (options_.source_env) {
        for (const auto& kv : *options_.source_env) source.push_back(kv.first);
    } else {
        for (char** e = environ; e && *e; ++e) source.emplace_back(*e, std::strcspn(*e, "="));
    }
    std::sort(source.begin(), source.end());
    std::string dropped;
    for (const auto& name : source) {
        if (!name.empty() && !env.count(name)) dropped += (dropped.empty() ? "" : ", ") + name;
    }
    if (!dropped.empty()) spdlog::info("not passed: {} (add it to env.pass)", dropped);
    std::vector<std::string> out;
    for (const auto& [k, v] : env) out.push_back(k + "=" + v);
    return out;
}

std::uint64_t Sandbox::egress_denied() const {
    std::uint64_t n = 0;
    for (const auto& ext : extensions_) n += ext->egress_denied();
    return n;
}

std::uint64_t Sandbox::dns_refused() const {
    std::uint64_t n = 0;
    for (const auto& ext : extensions_) n += ext->dns_refused();
    return n;
}

std::vector<Refusal> Sandbox::refused_destinations() const {
    std::vector<Refusal> out;
    for (const auto& ext : extensions_) {
        auto v = ext->refused_destinations();
        out.insert(out.end(), v.begin(), v.end());
    }
    return out;
}

void Sandbox::interrupt(int signal) {
    if (!interrupted_by_) interrupted_by_ = signal;
    terminate("interrupted");
}

void Sandbox::terminate(const std::string& status) {
    if (forced_status_.empty()) forced_status_ = status;
    if (cgroup_) cgroup_->kill();
}

RunReport Sandbox::run() {
    if (options_.command.empty()) throw Error(ErrorKind::usage, "no command given (mcpwarden run [options] -- CMD [ARGS...])");
    check_command_pin(options_.policy, options_.command);
    if (::geteuid() != 0) {
        throw Error(ErrorKind::sandbox_unavailable,
                    "mcpwarden run must run as root: it creates cgroups, attaches BPF programs "
                    "and then drops the server to an unprivileged user. Run it with sudo, or ask "
                    "a running mcpwarden agent for a sandbox");
    }
    // Signals are taken through a signalfd from here on, so a SIGTERM during setup still
    // removes what was created.
    std::optional<SignalGuard> signals;
    if (!options_.hosted) signals.emplace();
    // Beside the sweeps below, not after them: the identity's checks look the uid up in the
    // host's account databases (a hosted run's process has them loaded already).
    std::thread account_lookups;
    struct JoinLookups {
        std::thread& t;
        ~JoinLookups() {
            if (t.joinable()) t.join();
        }
    } join_lookups{account_lookups};
    if (!options_.hosted) account_lookups = std::thread(load_account_lookups);
    RunReport report;
    report.policy = options_.policy.name;
    report.limits = options_.limits;
    report.limits.open_files = options_.policy.limits.open_files;

    CgroupLayout layout = CgroupLayout::detect();
    CgroupPlan plan = plan_cgroups(layout, options_.cgroup_root);
    report.plan = plan;
    DegradedLimits degraded;
    check_enforceable(plan, degraded, report);
    if (!options_.hosted) {
        sweep_stale_sandboxes(plan);
        // Pinned enforcement of a stale sandbox goes only after its cgroup (with every process
        // in it) did; never from a hosted run (agent, attach), which sweeps no cgroup here.
        sweep_stale_enforcement();
        sweep_stale_workspaces(options_.state_dir);
    }

    // A uid of the (policy, client) pair's own unless a fixed account is asked for; the lease
    // keeps it locked until the run returns.
    if (account_lookups.joinable()) account_lookups.join();
    IdentityStore identities(options_.state_dir, options_.uid_range ? *options_.uid_range
                                                                    : configured_identity_range(options_.state_dir));
    std::optional<IdentityLease> lease;
    UserIdentity user;
    const std::string& fixed = !options_.user.empty() ? options_.user : options_.policy.user;
    if (!fixed.empty()) {
        user = resolve_user(fixed);
        if (identities.range().contains(user.uid) || identities.range().contains(user.gid)) {
            throw Error(ErrorKind::usage,
                        "user '" + fixed + "' is in the range of the sandboxes' own uids (" +
                            identities.range().to_string() + "): it would be another sandbox; leave user out",
                        {{"user", fixed}});
        }
    } else {
        lease = identities.acquire(options_.policy.name, options_.client_uid.value_or(::getuid()));
        user = {lease->name(), lease->uid, lease->gid};
    }
    report.user = user.name;
    report.uid = user.uid;
    std::string exe = resolve_executable(options_.command[0], kSandboxPath);

    CgroupLimits cl;
    if (!degraded.address_space) cl.memory_bytes = options_.limits.memory_bytes;
    if (!degraded.nproc) cl.pids = options_.limits.pids;
    if (plan.cpu != CgroupVersion::none) cl.cpu_millicores = options_.limits.cpu_millicores;
    std::string name = options_.name.empty() ? make_sandbox_name() : options_.name;
    report.sandbox = name;
    cgroup_ = std::make_unique<SandboxCgroup>(plan, name, cl);
    struct CgroupReset {  // the cgroup goes away on every path out of run()
        std::unique_ptr<SandboxCgroup>& cg;
        ~CgroupReset() { cg.reset(); }
    } cgroup_reset{cgroup_};

    Workspace ws(options_.state_dir, options_.policy.name, user,
                 degraded.address_space ? std::nullopt : options_.limits.memory_bytes, options_.client_uid,
                 lease.has_value());

    enforce_cache_bound(options_.policy.cache, ws.cache(), true, report.extra);

    for (auto& ext : extensions_) ext->before_spawn(*this);

    ChildSpec spec;
    spec.executable = exe;
    spec.argv = options_.command;
    spec.env = build_env(user, ws);
    spec.workdir = ws.home();
    spec.user = user;
    spec.cgroup_fd = cgroup_->unified_fd();
    spec.v1_procs_fds = cgroup_->v1_procs_fds();
    spec.degraded = degraded;
    spec.open_files = options_.policy.limits.open_files.value_or(Limits::kDefaultOpenFiles);
    // The private filesystem view (fs_view.h): its detached mounts are held only until the
    // child has set it up.
    FsViewRequest view_request;
    view_request.state_dir = options_.state_dir;
    view_request.executable = exe;
    view_request.workspace_mount = ws.mount_point();
    view_request.workspace_options = ws.mount_options();
    view_request.cache = ws.cache();
    view_request.user = user;
    view_request.tmpfs_size = degraded.address_space ? std::nullopt : options_.limits.memory_bytes;
    view_request.filesystem = options_.policy.filesystem;
    auto fs_view = plan_fs_view(view_request);
    spec.fs_view = fs_view.get();
    // seccomp filter and Landlock (confinement.h); alive until spawn_child returned.
    auto confinement = make_confinement({.allow_user_namespaces = options_.policy.allow_user_namespaces});
    confinement->apply(spec);
    report.extra["confinement"] = {{"pid_namespace", true}, {"ipc_namespace", true}, {"session", "new"},
                                   {"session_keyring", "new"}, {"landlock_abi", landlock_abi()},
                                   {"landlock", landlock_scope(spec.landlock_abi)}};
    spec.parent_death_kill = !options_.hosted;
    spec.stdin_fd = options_.stdin_fd;
    spec.stdout_fd = options_.stdout_fd;
    spec.stderr_fd = options_.stderr_fd;

    bool ext_pipes = false;
    for (auto& ext : extensions_) ext_pipes = ext_pipes || ext->wants_stdio_pipes();
    // A TCP/UDP socket handed to us as stdio was created outside the sandbox cgroup and would
    // not be checked by the egress programs: relay it through pipes instead of passing it on.
    bool raw_relay = !ext_pipes && (is_inet_socket(options_.stdio_fd(0)) ||
                                    is_inet_socket(options_.stdio_fd(1)) ||
                                    is_inet_socket(options_.stdio_fd(2)));
    // The relay watches stdin with epoll, which refuses what cannot be polled (a regular file, a
    // directory, /dev/null): refused here, before anything was spawned.
    if (raw_relay) {
        UniqueFd probe(::epoll_create1(EPOLL_CLOEXEC));
        epoll_event ev{};
        ev.events = EPOLLIN;
        if (probe && ::epoll_ctl(probe.get(), EPOLL_CTL_ADD, options_.stdio_fd(0), &ev) != 0 && errno == EPERM)
            throw Error(ErrorKind::usage,
                        "stdin cannot be relayed (a regular file, a directory or a device such as /dev/null) "
                        "while another stdio descriptor is a TCP/UDP socket, which mcpwarden relays through "
                        "pipes: give stdin as a pipe, a socket or a terminal",
                        {{"field", "stdio"}});
    }
    std::optional<Pipe> in, out, err;
    if (ext_pipes || raw_relay) {
        in = make_pipe();
        out = make_pipe();
        err = make_pipe();
        spec.stdin_fd = in->read.get();
        spec.stdout_fd = out->write.get();
        spec.stderr_fd = err->write.get();
    }

    auto started = Clock::now();
    child_ = spawn_child(spec);
    spec.fs_view = nullptr;
    fs_view.reset();
    spdlog::debug("sandbox {} started pid {} as {}", name, child_.pid, user.name);
    // Whatever fails from here on, the server does not outlive run() and is reaped (a hosted
    // run's host reaps nothing else: an unreaped child would stay a zombie of the agent).
    struct ChildReaper {
        Sandbox& sandbox;
        bool armed = true;
        ~ChildReaper() {
            if (!armed || !sandbox.child_.pidfd) return;
            if (sandbox.cgroup_) sandbox.cgroup_->kill();
            ::syscall(SYS_pidfd_send_signal, sandbox.child_.pidfd.get(), SIGKILL, nullptr, 0);
            siginfo_t info{};
            while (::waitid(P_PIDFD, static_cast<id_t>(sandbox.child_.pidfd.get()), &info, WEXITED) != 0 &&
                   errno == EINTR) {
            }
        }
    } reaper{*this};

    std::vector<std::unique_ptr<Pump>> pumps;
    // Pumps that did not reach their end (a stdin that never closes) close their descriptors
    // too, on every way out.
    struct PumpsFinish {
        std::vector<std::unique_ptr<Pump>>& pumps;
        ~PumpsFinish() {
            for (auto& p : pumps) p->finish();
        }
    } pumps_finish{pumps};
    if (in) {
        in->read.reset();
        out->write.reset();
        err->write.reset();
        if (ext_pipes) {
            int a = in->write.release(), b = out->read.release(), c = err->read.release();
            for (auto& ext : extensions_) {
                if (ext->wants_stdio_pipes()) ext->after_spawn(*this, a, b, c);
                else ext->after_spawn(*this, -1, -1, -1);
            }
        } else {
            // Our own stdio is left blocking-agnostic: dup it so O_NONBLOCK stays on our copy.
            // Each copy is owned here until its pump took it (a pump that cannot start leaks none).
            UniqueFd my_in(::fcntl(options_.stdio_fd(0), F_DUPFD_CLOEXEC, 3)),
                my_out(::fcntl(options_.stdio_fd(1), F_DUPFD_CLOEXEC, 3)),
                my_err(::fcntl(options_.stdio_fd(2), F_DUPFD_CLOEXEC, 3));
            if (!my_in || !my_out || !my_err) throw Error(ErrorKind::internal, errno_text("dup of stdio", errno));
            int in_fd = my_in.get();
            pumps.push_back(std::make_unique<Pump>(loop_, in_fd, in->write.get(), true, [in_fd] { ::close(in_fd); }));
            my_in.release();
            in->write.release();
            pumps.push_back(std::make_unique<Pump>(loop_, out->read.get(), my_out.get(), true));
            my_out.release();
            pumps.push_back(std::make_unique<Pump>(loop_, err->read.get(), my_err.get(), true));
            my_err.release();
            for (auto& ext : extensions_) ext->after_spawn(*this, -1, -1, -1);
        }
    } else {
        for (auto& ext : extensions_) ext->after_spawn(*this, -1, -1, -1);
    }

    siginfo_t exit_info{};
    bool exited = false;
    int pidfd = child_.pidfd.get();
    loop_.add(pidfd, EPOLLIN, [&](std::uint32_t) {
        siginfo_t info{};
        if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) == 0 &&
            info.si_pid != 0) {
            exit_info = info;
            exited = true;
            loop_.remove(pidfd);
        }
    });
    // A signal to mcpwarden goes to the server through the sandbox's init: the server's own
    // handler runs and it may end cleanly. Whatever still runs kInterruptGrace later, or at a
    // second signal, is killed.
    UniqueFd grace;
    if (signals) {
        loop_.add(signals->fd(), EPOLLIN, [&](std::uint32_t) {
            struct signalfd_siginfo si {};
            while (::read(signals->fd(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                int sig = static_cast<int>(si.ssi_signo);
                if (!forced_status_.empty() || grace ||
                    ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) {
                    spdlog::info("received signal {}: ending sandbox {}", sig, name);
                    interrupt(sig);
                    continue;
                }
                spdlog::info("received signal {}: passed to the server of sandbox {} ({} to end)",
                             sig, name, format_duration(kInterruptGrace));
                interrupted_by_ = sig;
                grace = make_timer(kInterruptGrace, false);
                loop_.add(grace.get(), EPOLLIN, [&](std::uint32_t) {
                    loop_.remove(grace.get());
                    spdlog::info("sandbox {} still ran {} after the signal: killed", name,
                                 format_duration(kInterruptGrace));
                    interrupt(*interrupted_by_);
                });
            }
        });
    }
    UniqueFd deadline;
    if (options_.limits.timeout) {
        deadline = make_timer(*options_.limits.timeout, false);
        loop_.add(deadline.get(), EPOLLIN, [&](std::uint32_t) {
            std::uint64_t n;
            (void)!::read(deadline.get(), &n, sizeof n);
            spdlog::info("sandbox {} reached its timeout of {}", name,
                         format_duration(*options_.limits.timeout));
            terminate("timeout");
            loop_.remove(deadline.get());
        });
    }
    // The kernel's own counters tell an OOM kill or a fork refused at pids.max; either ends
    // the whole sandbox (on v1 the OOM killer takes one process only). The kernel notifies
    // their changes (watch_limits); what it does not notify is polled.
    SandboxCgroup::LimitWatches limit_watches;
    UniqueFd poll_timer, settle_timer;
    int settle_ticks = 0;
    auto check_limits = [&] {
        auto c = cgroup_->counters();
        if (c.oom_kills > 0) terminate("memory_exceeded");
        else if (c.pids_max_hits > 0) terminate("pids_exceeded");
        return c.oom_kills > 0 || c.pids_max_hits > 0;
    };
    auto on_timer = [&](UniqueFd& timer, auto&& then) {
        loop_.add(timer.get(), EPOLLIN, [&timer, then](std::uint32_t) {
            std::uint64_t n;
            (void)!::read(timer.get(), &n, sizeof n);
            then();
        });
    };
    if (cl.memory_bytes || cl.pids) {
        limit_watches = cgroup_->watch_limits();
        for (const auto& w : limit_watches.watches) {
            loop_.add(w.fd.get(), w.events, [&, watch = &w](std::uint32_t) {
                watch->rearm();
                if (check_limits() || !watch->eventfd || settle_timer) return;
                // v1: the OOM is under way and its kill not counted yet: look again for 1 s.
                settle_ticks = 100;
                settle_timer = make_timer(std::chrono::milliseconds(10), true);
                on_timer(settle_timer, [&] {
                    if (check_limits() || --settle_ticks <= 0) {
                        loop_.remove(settle_timer.get());
                        settle_timer.reset();
                    }
                });
            });
        }
        if (limit_watches.poll) {
            poll_timer = make_timer(*limit_watches.poll, true);
            on_timer(poll_timer, [&] { check_limits(); });
        }
    }

    // Hosted (one thread per sandbox in the agent), the stack that setup used deep below this
    // frame goes back to the kernel before the long wait: ~20 KiB per sandbox.
    if (options_.hosted) release_stack_below_here();
    while (!exited) loop_.run_once(-1);
    reaper.armed = false;  // reaped by the pidfd's handler
    report.duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);

    // The main process is gone: nothing else of the sandbox may outlive it.
    cgroup_->kill();
    if (!cgroup_->wait_empty(std::chrono::seconds(10)))
        spdlog::error("sandbox {}: processes survived SIGKILL", name);
    if (signals) loop_.remove(signals->fd());
    if (grace) loop_.remove(grace.get());
    if (deadline) loop_.remove(deadline.get());
    if (poll_timer) loop_.remove(poll_timer.get());
    if (settle_timer) loop_.remove(settle_timer.get());
    for (const auto& w : limit_watches.watches) loop_.remove(w.fd.get());
    limit_watches.watches.clear();
    // Drain what the processes wrote before they ended (their pipe ends are closed now).
    auto drain_until = Clock::now() + std::chrono::seconds(2);
    auto output_pending = [&] {
        for (size_t i = 1; i < pumps.size(); ++i) {
            if (!pumps[i]->done()) return true;
        }
        for (auto& ext : extensions_) {
            if (ext->draining()) return true;
        }
        return false;
    };
    while (output_pending() && Clock::now() < drain_until) loop_.run_once(20);
    for (auto& p : pumps) p->finish();
    pumps.clear();

    auto counters = cgroup_->counters();
    report.oom_kills = counters.oom_kills;
    report.pids_max_hits = counters.pids_max_hits;
    report.peak_memory = counters.memory_peak;
    // The server's own end, as the init saw it (the init's, when the sandbox was killed).
    exit_info = child_exit_status(child_, exit_info);
    if (exit_info.si_code == CLD_EXITED) {
        report.exit_code = exit_info.si_status;
    } else {
        report.signal = exit_info.si_status;
    }
    if (interrupted_by_ && forced_status_.empty()) {
        // The server ended on the signal passed on to it: its own status is kept beside it.
        forced_status_ = "interrupted";
        report.extra["server_exit"] = {{"exit_code", report.exit_code ? nlohmann::json(*report.exit_code) : nlohmann::json(nullptr)},
                                       {"signal", report.signal ? nlohmann::json(*report.signal) : nlohmann::json(nullptr)}};
    }
    if (!forced_status_.empty()) report.status = forced_status_;
    else if (counters.oom_kills > 0) report.status = "memory_exceeded";
    else if (counters.pids_max_hits > 0) report.status = "pids_exceeded";
    else report.status = report.exit_code ? "exited" : "signaled";
    if (report.status == "interrupted" && interrupted_by_) {
        report.signal = *interrupted_by_;
        report.exit_code.reset();
    }
    for (auto& ext : extensions_) ext->on_end(*this, report);
    // Every process of the sandbox is gone: nothing writes the cache while it is measured.
    try {
        enforce_cache_bound(options_.policy.cache, ws.cache(), false, report.extra);
    } catch (const Error& e) {
        spdlog::warn("sandbox {}: {}", name, e.what());
    }
    cgroup_.reset();
    // As a child subreaper (the CLI sets it), orphaned daemons of the sandbox became our
    // children: reap them so no zombie is left to a slow init.
    // Hosted, the host reaps (other runs' children must keep their exit status).
    while (!options_.hosted && ::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    return report;
}

}  // namespace mcpwarden
