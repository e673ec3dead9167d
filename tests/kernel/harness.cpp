// SPDX-License-Identifier: Apache-2.0
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include "cgroup.h"
#include "fd.h"

namespace harness {

bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci && std::string(ci) == "true";
}

namespace {

// Temporary directories of the test process, removed when it exits: nothing is left behind.
struct TempDirs {
    std::vector<std::string> paths;
    ~TempDirs() {
        std::error_code ec;
        for (const auto& p : paths) std::filesystem::remove_all(p, ec);
    }
};

std::string temp_dir(const std::string& prefix, mode_t mode, const std::string& parent = "/tmp") {
    static TempDirs dirs;
    std::string tmpl = parent + "/" + prefix + "XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    ::chmod(buf.data(), mode);
    dirs.paths.push_back(buf.data());
    return buf.data();
}

}  // namespace

std::string state_dir() {
    static std::string dir = temp_dir("mcpwarden-state-", 0755);
    return dir;
}

namespace {
// Not under /tmp: the sandbox has a private /tmp, and a command the view hides is refused.
// /var/lib is visible in the sandbox (all but /var/lib/mcpwarden), read-only. Made by the test
// process itself (KernelTest::SetUp asks for it before the test runs): a forked child that
// made it first would _exit without removing it.
const std::string& program_dir() {
    static std::string dir = temp_dir("mcpwarden-progs-", 0755, "/var/lib");
    return dir;
}
}  // namespace

std::string program(const std::string& name) {
    std::string target = program_dir() + "/" + name;
    if (::access(target.c_str(), X_OK) != 0) {
        std::string source = std::string(MCPWARDEN_BIN_DIR) + "/" + (name == "example-server" ? "mcpwarden-example-server" : name);
        std::ifstream in(source, std::ios::binary);
        std::ofstream out(target, std::ios::binary);
        out << in.rdbuf();
        out.close();
        ::chmod(target.c_str(), 0755);
    }
    return target;
}

Result command(const std::vector<std::string>& argv, const Options& opts) {
    int in[2], out[2], err[2];
    if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
        throw std::runtime_error("pipe2");
    auto start = std::chrono::steady_clock::now();
    // A command that exits without reading all its stdin must fail its test, not kill the
    // test binary with SIGPIPE; the command itself gets the default disposition back.
    ::signal(SIGPIPE, SIG_IGN);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::signal(SIGPIPE, SIG_DFL);
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        for (const auto& [k, v] : opts.env) ::setenv(k.c_str(), v.c_str(), 1);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    Result r;
    // Feed stdin and collect stdout/stderr without deadlocking on full pipes.
    size_t written = 0;
    int in_fd = in[1];
    ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
    if (opts.stdin_data.empty() && opts.close_stdin) {
        ::close(in_fd);
        in_fd = -1;
    }
    auto deadline = start + opts.kill_after;
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
        struct pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in_fd, POLLOUT, 0}};
        int nfds = in_fd >= 0 ? 3 : 2;
        if (!out_open) fds[0].fd = -1;
        if (!err_open) fds[1].fd = -1;
        int rc = ::poll(fds, nfds, 200);
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ADD_FAILURE() << "command did not finish in time: " << argv[0];
            break;
        }
        if (rc <= 0) continue;
        char buf[65536];
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
                if (n > 0) (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
                else (i == 0 ? out_open : err_open) = false;
            }
        }
        if (in_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = ::write(in_fd, opts.stdin_data.data() + written, opts.stdin_data.size() - written);
            if (n > 0) written += static_cast<size_t>(n);
            if (n < 0 && errno != EAGAIN) written = opts.stdin_data.size();
            if (written == opts.stdin_data.size() && opts.close_stdin) {
                ::close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0) ::close(in_fd);
    ::close(out[0]);
    ::close(err[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

std::chrono::milliseconds start_cost() {
    Result r = warden({"run", "--", "/bin/true"});
    return r.elapsed;
}

Result warden(const std::vector<std::string>& args, const Options& opts) {
    std::vector<std::string> argv{MCPWARDEN_BIN};
    std::string report;
    for (size_t i = 0; i < args.size(); ++i) {
        argv.push_back(args[i]);
        if (i == 0 && args[0] == "run") {
            report = state_dir() + "/report-" + std::to_string(::getpid()) + ".json";
            ::unlink(report.c_str());
            argv.insert(argv.end(), {"--report", report, "--state-dir", state_dir()});
        }
    }
    Result r = command(argv, opts);
    if (!report.empty()) {
        std::ifstream in(report);
        if (in) {
            try {
                in >> r.report;
            } catch (...) {
            }
        }
        ::unlink(report.c_str());
    }
    return r;
}

int directory_entries(const std::string& path) {
    DIR* d = ::opendir(path.c_str());
    if (!d) return 0;
    int n = 0;
    while (auto* e = ::readdir(d)) n += std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0;
    ::closedir(d);
    return n;
}

std::vector<std::string> leftover_cgroups() {
    std::vector<std::string> out;
    auto layout = mcpwarden::CgroupLayout::detect();
    if (layout.unified_mount.empty()) return out;
    auto plan = mcpwarden::plan_cgroups(layout, "");
    for (const auto* base : {&plan.unified_base, &plan.memory_base, &plan.pids_base, &plan.cpu_base}) {
        if (base->empty()) continue;
        std::string parent = mcpwarden::sandbox_parent(*base);
        DIR* d = ::opendir(parent.c_str());
        if (!d) continue;
        while (auto* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.rfind("s-", 0) == 0) out.push_back(parent + "/" + n);
        }
        ::closedir(d);
    }
    return out;
}

std::vector<std::string> leftover_shared_state() {
    std::vector<std::string> out;
    auto layout = mcpwarden::CgroupLayout::detect();
    if (!layout.unified_mount.empty()) {
        auto plan = mcpwarden::plan_cgroups(layout, "");
        for (const auto* base : {&plan.unified_base, &plan.memory_base, &plan.pids_base, &plan.cpu_base}) {
            if (base->empty()) continue;
            std::string parent = mcpwarden::sandbox_parent(*base);
            if (::access(parent.c_str(), F_OK) != 0) continue;
            bool has_sandboxes = false;
            if (DIR* d = ::opendir(parent.c_str())) {
                while (auto* e = ::readdir(d)) has_sandboxes = has_sandboxes || std::strncmp(e->d_name, "s-", 2) == 0;
                ::closedir(d);
            }
            if (!has_sandboxes) out.push_back(parent);
        }
    }
    if (::access("/sys/fs/bpf/mcpwarden", F_OK) == 0) {
        mcpwarden::UniqueFd bpffs(::open("/sys/fs/bpf", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (bpffs && ::flock(bpffs.get(), LOCK_EX | LOCK_NB) == 0) out.push_back("/sys/fs/bpf/mcpwarden");
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::vector<pid_t> leftover_processes() {
    std::vector<pid_t> out;
    DIR* d = ::opendir("/proc");
    while (auto* e = ::readdir(d)) {
        pid_t pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        std::string cg, stat;
        // Zombies have left their cgroup already; they only wait for a parent to reap them.
        if (mcpwarden::read_file("/proc/" + std::to_string(pid) + "/stat", stat) &&
            stat.find(") Z") != std::string::npos)
            continue;
        if (mcpwarden::read_file("/proc/" + std::to_string(pid) + "/cgroup", cg) &&
            cg.find("/mcpwarden/s-") != std::string::npos)
            out.push_back(pid);
    }
    ::closedir(d);
    return out;
}

bool crash_run(const std::string& policy, const std::string& script, std::size_t processes) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int devnull = ::open("/dev/null", O_RDWR);
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "run", "--state-dir", state_dir().c_str(), "--policy", policy.c_str(), "--",
                "sh", "-c", script.c_str(), nullptr);
        ::_exit(127);
    }
    for (int i = 0; i < 500 && leftover_processes().size() < processes; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    bool started = leftover_processes().size() >= processes;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return started;
}

namespace {
// True when `pid` is this test process or one of its descendants.
bool ours(pid_t pid) {
    for (int hops = 0; pid > 1 && hops < 64; ++hops) {
        if (pid == ::getpid()) return true;
        std::string stat;
        if (!mcpwarden::read_file("/proc/" + std::to_string(pid) + "/stat", stat)) return false;
        auto close = stat.rfind(')');
        if (close == std::string::npos) return false;
        std::istringstream rest(stat.substr(close + 2));
        std::string state;
        rest >> state >> pid;
    }
    return false;
}

// A sandbox named s-<owner pid>-... whose owner still runs outside this test belongs to
// someone else on the machine (another suite running at the same time).
bool someone_elses(const std::string& cgroup_path) {
    auto name = cgroup_path.substr(cgroup_path.rfind('/') + 1);
    pid_t owner = std::atoi(name.c_str() + 2);
    return mcpwarden::sandbox_owner_alive(name) && !ours(owner);
}

template <typename T>
std::vector<T> appeared(std::vector<T> now, std::vector<T> before) {
    std::sort(now.begin(), now.end());
    std::sort(before.begin(), before.end());
    std::vector<T> out;
    std::set_difference(now.begin(), now.end(), before.begin(), before.end(), std::back_inserter(out));
    return out;
}
}  // namespace

void KernelTest::SetUp() {
    REQUIRE_ROOT();
    state_dir();
    program_dir();
    cgroups_before_ = leftover_cgroups();
    shared_before_ = leftover_shared_state();
    processes_before_ = leftover_processes();
}

void KernelTest::TearDown() {
    if (::geteuid() != 0) return;
    auto procs = appeared(leftover_processes(), processes_before_);
    procs.erase(std::remove_if(procs.begin(), procs.end(),
                               [](pid_t pid) {
                                   std::string cg;
                                   mcpwarden::read_file("/proc/" + std::to_string(pid) + "/cgroup", cg);
                                   auto at = cg.find("/mcpwarden/s-");
                                   if (at == std::string::npos) return true;  // gone meanwhile
                                   auto name = cg.substr(at + 11);
                                   name = name.substr(0, name.find_first_of("/\n"));
                                   return someone_elses("/" + name);
                               }),
                procs.end());
    EXPECT_EQ(procs, std::vector<pid_t>{}) << "sandbox processes left running";
    auto cgs = appeared(leftover_cgroups(), cgroups_before_);
    cgs.erase(std::remove_if(cgs.begin(), cgs.end(), someone_elses), cgs.end());
    EXPECT_TRUE(cgs.empty()) << "sandbox cgroups left: " << (cgs.empty() ? "" : cgs[0]);
    auto shared = appeared(leftover_shared_state(), shared_before_);
    EXPECT_TRUE(shared.empty()) << "left behind although nothing uses it: " << (shared.empty() ? "" : shared[0]);
}

}  // namespace harness
