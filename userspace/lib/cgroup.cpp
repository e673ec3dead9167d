// SPDX-License-Identifier: Apache-2.0
#include "cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "error.h"

namespace mcpwarden {

std::string_view to_string(CgroupVersion v) {
    switch (v) {
        case CgroupVersion::v1: return "v1";
        case CgroupVersion::v2: return "v2";
        case CgroupVersion::none: return "none";
    }
    return "none";
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string item;
    std::stringstream ss(s);
    while (std::getline(ss, item, sep)) out.push_back(item);
    return out;
}

std::string join_path(const std::string& mount, const std::string& mount_root,
                      const std::string& cg) {
    std::string rel = cg;
    if (mount_root != "/" && rel.rfind(mount_root, 0) == 0) rel = rel.substr(mount_root.size());
    if (rel.empty() || rel == "/") return mount;
    if (rel[0] != '/') rel = "/" + rel;
    return mount + rel;
}

bool has_word(const std::string& list, const std::string& word, char sep) {
    for (const auto& w : split(list, sep)) {
        if (w == word) return true;
    }
    return false;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

// "key value" lines (memory.events, pids.events, memory.oom_control).
std::uint64_t read_keyed(const std::string& path, const std::string& key) {
    std::string text;
    if (!read_file(path, text)) return 0;
    std::stringstream ss(text);
    std::string k;
    std::uint64_t v;
    while (ss >> k >> v) {
        if (k == key) return v;
    }
    return 0;
}

std::optional<std::uint64_t> read_number(const std::string& path) {
    std::string text;
    if (!read_file(path, text)) return std::nullopt;
    try {
        return std::stoull(text);
    } catch (...) {
        return std::nullopt;
    }
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

void must_write(const std::string& path, const std::string& value, const std::string& what) {
    int err = 0;
    if (!write_file(path, value, &err)) {
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text("cannot set " + what + " (" + path + " = " + value + ")", err),
                    {{"path", path}});
    }
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
        int err = errno;
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text("cannot create cgroup " + path, err) +
                        (err == EACCES || err == EPERM
                             ? "; mcpwarden must run as root (or own a delegated cgroup subtree)"
                             : ""),
                    {{"path", path}});
    }
}

// Kills each listed process until the directory is empty (v1, or kernels without cgroup.kill).
void kill_listed(const std::string& dir) {
    for (int round = 0; round < 100; ++round) {
        std::string text;
        if (!read_file(dir + "/cgroup.procs", text) || text.empty()) return;
        std::stringstream ss(text);
        pid_t pid;
        while (ss >> pid) ::kill(pid, SIGKILL);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

bool remove_dir(const std::string& path) {
    if (path.empty()) return true;
    for (int attempt = 0; attempt < 200; ++attempt) {
        if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
        if (errno != EBUSY) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    spdlog::warn("could not remove cgroup {}: {}", path, std::strerror(errno));
    return false;
}

std::optional<std::string> proc_start_time(pid_t pid) {
    std::string text;
    if (!read_file("/proc/" + std::to_string(pid) + "/stat", text)) return std::nullopt;
    auto close = text.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::stringstream ss(text.substr(close + 2));
    std::string field;
    // Fields after "comm": state is field 3; starttime is field 22.
    for (int i = 3; i <= 22 && (ss >> field); ++i) {
        if (i == 22) return field;
    }
    return std::nullopt;
}

}  // namespace

CgroupLayout CgroupLayout::parse(const std::string& mountinfo, const std::string& proc_cgroup) {
    CgroupLayout l;
    for (const auto& line : split(mountinfo, '\n')) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        auto left = split(line.substr(0, dash), ' ');
        auto right = split(line.substr(dash + 3), ' ');
        if (left.size() < 5 || right.size() < 3) continue;
        const std::string& root = left[3];
        const std::string& mount = left[4];
        const std::string& fstype = right[0];
        const std::string& opts = right[2];
        if (fstype == "cgroup2") {
            if (l.unified_mount.empty()) {
                l.unified_mount = mount;
                l.unified_root = root;
            }
        } else if (fstype == "cgroup") {
            if (has_word(opts, "memory", ',') && l.v1_memory_mount.empty()) {
                l.v1_memory_mount = mount;
                l.memory_root = root;
            }
            if (has_word(opts, "pids", ',') && l.v1_pids_mount.empty()) {
                l.v1_pids_mount = mount;
                l.pids_root = root;
            }
            if (has_word(opts, "cpu", ',') && l.v1_cpu_mount.empty()) {
                l.v1_cpu_mount = mount;
                l.cpu_root = root;
            }
        }
    }
    for (const auto& line : split(proc_cgroup, '\n')) {
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        std::string hier = line.substr(0, first);
        std::string ctrls = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        if (hier == "0" && ctrls.empty()) l.own_unified = path;
        if (has_word(ctrls, "memory", ',')) l.own_memory = path;
        if (has_word(ctrls, "pids", ',')) l.own_pids = path;
        if (has_word(ctrls, "cpu", ',')) l.own_cpu = path;
    }
    return l;
}

CgroupLayout CgroupLayout::detect() {
    std::string mountinfo, cg;
    read_file("/proc/self/mountinfo", mountinfo);
    read_file("/proc/self/cgroup", cg);
    return parse(mountinfo, cg);
}

std::string sandbox_parent(const std::string& base) { return base + "/mcpwarden"; }

CgroupPlan plan_cgroups(const CgroupLayout& l, const std::string& cgroup_root) {
    if (l.unified_mount.empty()) {
        throw Error(ErrorKind::sandbox_unavailable,
                    "no cgroup v2 (unified) hierarchy is mounted; mcpwarden needs it to start the "
                    "server inside its own cgroup and to attach egress programs. Mount it "
                    "(mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with "
                    "systemd.unified_cgroup_hierarchy=1");
    }
    CgroupPlan p;
    auto pick = [&](const std::string& own) {
        return cgroup_root.empty() ? (own.empty() ? std::string("/") : own) : cgroup_root;
    };
    p.unified_base = join_path(l.unified_mount, l.unified_root, pick(l.own_unified));
    std::string controllers;
    read_file(p.unified_base + "/cgroup.controllers", controllers);
    controllers = trim(controllers);
    auto has_v2 = [&](const char* c) { return has_word(controllers, c, ' '); };
    if (has_v2("memory")) {
        p.memory = CgroupVersion::v2;
    } else if (!l.v1_memory_mount.empty()) {
        p.memory = CgroupVersion::v1;
        p.memory_base = join_path(l.v1_memory_mount, l.memory_root, pick(l.own_memory));
    }
    if (has_v2("pids")) {
        p.pids = CgroupVersion::v2;
    } else if (!l.v1_pids_mount.empty()) {
        p.pids = CgroupVersion::v1;
        p.pids_base = join_path(l.v1_pids_mount, l.pids_root, pick(l.own_pids));
    }
    if (has_v2("cpu")) {
        p.cpu = CgroupVersion::v2;
    } else if (!l.v1_cpu_mount.empty()) {
        p.cpu = CgroupVersion::v1;
        p.cpu_base = join_path(l.v1_cpu_mount, l.cpu_root, pick(l.own_cpu));
    }
    return p;
}

std::string make_sandbox_name() {
    static std::atomic<unsigned> seq{0};
    pid_t self = ::getpid();
    return "s-" + std::to_string(self) + "-" + proc_start_time(self).value_or("0") + "-" +
           std::to_string(seq++);
}

namespace {

// On v2, a controller must be enabled in subtree_control of every ancestor between the base
// and the sandbox.
// False when dir is gone (ENOENT): the "mcpwarden" parent, removed by the last sandbox out.
bool enable_v2_controllers(const std::string& dir, const std::vector<std::string>& wanted) {
    std::string current;
    read_file(dir + "/cgroup.subtree_control", current);
    std::string add;
    for (const auto& c : wanted) {
        if (!has_word(trim(current), c, ' ')) add += (add.empty() ? "+" : " +") + c;
    }
    if (add.empty()) return true;
    int err = 0;
    if (!write_file(dir + "/cgroup.subtree_control", add, &err)) {
        if (err == ENOENT) return false;
        std::string msg = errno_text("cannot enable cgroup controllers (" + add + ") in " + dir, err);
        if (err == EBUSY) {
            msg += "; that cgroup holds processes, and cgroup v2 only hands controllers to "
                   "children of a cgroup without processes of its own. Run mcpwarden in a cgroup "
                   "of its own (systemd: Delegate=yes, the warden in a sub-cgroup) or pass "
                   "--cgroup-root with an empty cgroup";
        }
        throw Error(ErrorKind::sandbox_unavailable, msg, {{"path", dir}});
    }
    return true;
}

}  // namespace

SandboxCgroup::SandboxCgroup(const CgroupPlan& plan, const std::string& name,
                             const CgroupLimits& limits)
    : name_(name) {
    try {
        std::vector<std::string> v2_wanted;
        if (limits.memory_bytes && plan.memory == CgroupVersion::v2) v2_wanted.push_back("memory");
        if (limits.pids && plan.pids == CgroupVersion::v2) v2_wanted.push_back("pids");
        if (limits.cpu_millicores && plan.cpu == CgroupVersion::v2) v2_wanted.push_back("cpu");

        // The parent of the sandboxes goes away with the last of them (destroy): one ending at
        // this moment may remove it between our mkdir of the parent and of the sandbox, so the
        // pair is retried.
        auto make_child = [&](const std::string& base, const std::vector<std::string>& controllers) {
            std::string parent = sandbox_parent(base), path = parent + "/" + name;
            // The parent goes with the last sandbox out, at any moment until our child is in it:
            // each step meeting it gone (ENOENT) starts again.
            for (int attempt = 0;; ++attempt) {
                make_dir(parent);
                bool enabled = controllers.empty() ||
                               (enable_v2_controllers(base, controllers) && enable_v2_controllers(parent, controllers));
                int err = ENOENT;
                if (enabled) {
                    if (::mkdir(path.c_str(), 0755) == 0) {
                        // The parent may have been removed and made again, without controllers,
                        // by a sandbox without limits after we enabled them: our child keeps it
                        // now, so enabling once more settles it.
                        if (controllers.empty() || enable_v2_controllers(parent, controllers)) break;
                        ::rmdir(path.c_str());
                    } else {
                        err = errno;
                    }
                }
                if (err != ENOENT || attempt == 10)
                    throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot create cgroup " + path, err),
                                {{"path", path}});
            }
            return path;
        };
        unified_ = make_child(plan.unified_base, v2_wanted);
        unified_fd_.reset(::open(unified_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!unified_fd_) {
            throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot open " + unified_, errno));
        }
        struct stat st {};
        if (::fstat(unified_fd_.get(), &st) == 0) unified_id_ = st.st_ino;

        auto v1_dir = [&](const std::string& base, std::string& out) {
            out = make_child(base, {});
            UniqueFd fd(::open((out + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot open " + out + "/cgroup.procs", errno));
            v1_procs_.push_back(std::move(fd));
        };

        if (limits.memory_bytes) {
            std::string value = std::to_string(*limits.memory_bytes);
            memory_ver_ = plan.memory;
            if (plan.memory == CgroupVersion::v2) {
                must_write(unified_ + "/memory.max", value, "memory limit");
                if (exists(unified_ + "/memory.swap.max"))
                    must_write(unified_ + "/memory.swap.max", "0", "swap limit");
                must_write(unified_ + "/memory.oom.group", "1", "memory.oom.group");
            } else if (plan.memory == CgroupVersion::v1) {
                v1_dir(plan.memory_base, memory_);
                must_write(memory_ + "/memory.limit_in_bytes", value, "memory limit");
                // Without swap accounting the memsw file is absent; the limit then covers RAM only.
                if (exists(memory_ + "/memory.memsw.limit_in_bytes"))
                    must_write(memory_ + "/memory.memsw.limit_in_bytes", value, "memory+swap limit");
            }
        }
        if (limits.pids) {
            std::string value = std::to_string(*limits.pids);
            pids_ver_ = plan.pids;
            if (plan.pids == CgroupVersion::v2) {
                must_write(unified_ + "/pids.max", value, "pids limit");
            } else if (plan.pids == CgroupVersion::v1) {
                v1_dir(plan.pids_base, pids_);
                must_write(pids_ + "/pids.max", value, "pids limit");
            }
        }
        if (limits.cpu_millicores) {
            const std::uint64_t period = 100000;
            std::uint64_t quota = std::max<std::uint64_t>(1000, *limits.cpu_millicores * period / 1000);
            if (plan.cpu == CgroupVersion::v2) {
                must_write(unified_ + "/cpu.max", std::to_string(quota) + " " + std::to_string(period), "cpu limit");
            } else if (plan.cpu == CgroupVersion::v1) {
                v1_dir(plan.cpu_base, cpu_);
                must_write(cpu_ + "/cpu.cfs_period_us", std::to_string(period), "cpu period");
                must_write(cpu_ + "/cpu.cfs_quota_us", std::to_string(quota), "cpu quota");
            }
        }
    } catch (...) {
        destroy();
        throw;
    }
}

SandboxCgroup::~SandboxCgroup() { destroy(); }

const std::vector<int> SandboxCgroup::v1_procs_fds() const {
    std::vector<int> out;
    for (const auto& fd : v1_procs_) out.push_back(fd.get());
    return out;
}

std::vector<std::string> SandboxCgroup::paths() const {
    std::vector<std::string> out;
    for (const auto* p : {&unified_, &memory_, &pids_, &cpu_}) {
        if (!p->empty()) out.push_back(*p);
    }
    return out;
}

CgroupCounters SandboxCgroup::counters() const {
    CgroupCounters c;
    if (memory_ver_ == CgroupVersion::v2) {
        c.oom_kills = read_keyed(unified_ + "/memory.events", "oom_kill");
        c.memory_peak = read_number(unified_ + "/memory.peak");
    } else if (memory_ver_ == CgroupVersion::v1) {
        c.oom_kills = read_keyed(memory_ + "/memory.oom_control", "oom_kill");
        c.memory_peak = read_number(memory_ + "/memory.max_usage_in_bytes");
    }
    if (pids_ver_ == CgroupVersion::v2) {
        c.pids_max_hits = read_keyed(unified_ + "/pids.events", "max");
    } else if (pids_ver_ == CgroupVersion::v1) {
        c.pids_max_hits = read_keyed(pids_ + "/pids.events", "max");
    }
    return c;
}

void SandboxCgroup::LimitWatch::rearm() const {
    if (eventfd) {
        std::uint64_t n;
        (void)!::read(fd.get(), &n, sizeof n);
    } else {
        char buf[512];
        (void)!::pread(fd.get(), buf, sizeof buf, 0);
    }
}

SandboxCgroup::LimitWatches SandboxCgroup::watch_limits() const {
    using std::chrono::milliseconds;
    LimitWatches out;
    auto poll_every = [&](milliseconds every) {
        out.poll = out.poll ? std::min(*out.poll, every) : every;
    };
    // A kernfs file: opened and read once, so that poll reports its next change.
    auto notified_file = [&](const std::string& path) {
        LimitWatch w;
        w.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!w.fd) {
            spdlog::warn("sandbox {}: cannot watch {} ({}): polling it", name_, path, std::strerror(errno));
            poll_every(milliseconds(20));
            return;
        }
        w.events = EPOLLPRI;
        w.rearm();
        out.watches.push_back(std::move(w));
    };
    if (memory_ver_ == CgroupVersion::v2) {
        notified_file(unified_ + "/memory.events");
    } else if (memory_ver_ == CgroupVersion::v1) {
        std::string control = memory_ + "/memory.oom_control";
        UniqueFd file(::open(control.c_str(), O_RDONLY | O_CLOEXEC));
        LimitWatch w;
        w.fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        int err = 0;
        if (!file || !w.fd ||
            !write_file(memory_ + "/cgroup.event_control",
                        std::to_string(w.fd.get()) + " " + std::to_string(file.get()), &err)) {
            if (!err) err = errno;
            spdlog::warn("sandbox {}: cannot register an OOM eventfd for {} ({}): polling it",
                         name_, control, std::strerror(err));
            poll_every(milliseconds(20));
        } else {
            w.events = EPOLLIN;
            w.eventfd = true;
            out.watches.push_back(std::move(w));
        }
    }
    if (pids_ver_ == CgroupVersion::v2) {
        notified_file(unified_ + "/pids.events");
    } else if (pids_ver_ == CgroupVersion::v1) {
        // Some kernels (6.18) do not notify v1 pids.events: it is watched and polled slowly.
        notified_file(pids_ + "/pids.events");
        poll_every(milliseconds(200));
    }
    return out;
}

bool SandboxCgroup::populated() const {
    if (unified_.empty()) return false;
    return read_keyed(unified_ + "/cgroup.events", "populated") != 0;
}

void SandboxCgroup::kill() {
    if (unified_.empty()) return;
    int err = 0;
    if (!write_file(unified_ + "/cgroup.kill", "1", &err)) {
        // Kernels before 5.14 have no cgroup.kill.
        kill_listed(unified_);
    }
    for (const auto* p : {&memory_, &pids_, &cpu_}) {
        if (!p->empty()) kill_listed(*p);
    }
}

bool SandboxCgroup::wait_empty(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto delay = std::chrono::microseconds(50);
    while (populated()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(delay);
        delay = std::min<std::chrono::microseconds>(delay * 2, std::chrono::milliseconds(10));
    }
    return true;
}

void SandboxCgroup::destroy() {
    if (destroyed_) return;
    destroyed_ = true;
    if (!unified_.empty() && populated()) {
        kill();
        if (!wait_empty(std::chrono::seconds(10)))
            spdlog::error("processes of sandbox {} did not exit after SIGKILL", name_);
    }
    v1_procs_.clear();
    unified_fd_.reset();
    for (auto* p : {&cpu_, &pids_, &memory_, &unified_}) {
        if (!p->empty() && remove_sandbox_cgroup(*p)) p->clear();
    }
}

bool remove_sandbox_cgroup(const std::string& path) {
    if (!remove_dir(path)) return false;
    // The last sandbox out removes the parent too; while others remain, rmdir fails (EBUSY).
    std::string parent = path.substr(0, path.rfind('/'));
    if (parent.ends_with("/mcpwarden")) ::rmdir(parent.c_str());
    return true;
}

bool sandbox_owner_alive(const std::string& name) {
    auto parts = split(name, '-');
    if (parts.size() != 4 || parts[0] != "s") return true;  // not ours to judge
    pid_t owner = static_cast<pid_t>(std::atol(parts[1].c_str()));
    auto start = proc_start_time(owner);
    return start && *start == parts[2];
}

int sweep_stale_sandboxes(const CgroupPlan& plan) {
    return sweep_sandboxes(plan, [](const std::string& n) { return n.rfind("s-", 0) == 0 && !sandbox_owner_alive(n); });
}

int sweep_sandboxes(const CgroupPlan& plan, const std::function<bool(const std::string& name)>& is_stale) {
    int removed = 0;
    std::vector<std::string> bases{plan.unified_base};
    for (const auto* b : {&plan.memory_base, &plan.pids_base, &plan.cpu_base}) {
        if (!b->empty()) bases.push_back(*b);
    }
    for (const auto& base : bases) {
        std::string parent = sandbox_parent(base);
        DIR* dir = ::opendir(parent.c_str());
        if (!dir) continue;
        std::vector<std::string> stale;
        while (auto* ent = ::readdir(dir)) {
            std::string n = ent->d_name;
            if (n == "." || n == ".." || !is_stale(n)) continue;
            stale.push_back(parent + "/" + n);
        }
        ::closedir(dir);
        for (const auto& path : stale) {
            if (!write_file(path + "/cgroup.kill", "1")) kill_listed(path);
            for (int i = 0; i < 1000 && read_keyed(path + "/cgroup.events", "populated"); ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            kill_listed(path);
            if (remove_sandbox_cgroup(path)) {
                spdlog::info("removed stale sandbox cgroup {}", path);
                ++removed;
            }
        }
    }
    return removed;
}

}  // namespace mcpwarden
