// SPDX-License-Identifier: Apache-2.0
// The bypass suite's hardening part (docs/security.md): a hostile server, or a hostile local
// user, against mcpwarden itself and the kernel beneath it. Kernel interfaces no MCP server
// needs (the seccomp filter's groups), terminal injection, new user namespaces.
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/seccomp.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent_process.h"
#include "bypass_common.h"
#include "confinement.h"
#include "fd.h"
#include "sandbox_cache.h"

using namespace harness;
using namespace netfix;
using namespace bypass;
using mcpwarden::SeccompOptions;
using mcpwarden::build_seccomp_filter;
using namespace std::chrono_literals;

namespace {

// Runs sysprobe for each probe as a sandboxed server (as nobody, under the policy), one line each.
std::vector<std::string> sandboxed_probes(const std::string& policy, const std::vector<std::string>& probes) {
    std::string script;
    for (const auto& p : probes) script += "$SP " + p + "; ";
    auto s = sandboxed(policy, script, {"--env", "SP=" + program("sysprobe")});
    EXPECT_EQ(s.lines.size(), probes.size()) << s.result.err;
    return s.lines;
}

// The same probes as nobody outside any sandbox: what the kernel alone answers.
std::vector<std::string> nobody_probes(const std::vector<std::string>& probes) {
    std::vector<std::string> out;
    for (const auto& p : probes) {
        auto r = as_nobody({program("sysprobe"), p});
        out.push_back(r.out.empty() ? r.err : split_lines(r.out)[0]);
    }
    return out;
}

// As root, which holds every capability, with and without the sandbox's seccomp filter: an
// EPERM under the filter is the filter's, not a missing capability's.
std::string root_probe(const std::string& probe, const SeccompOptions* filter) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return "pipe2";
    std::vector<sock_filter> program_filter;
    sock_fprog prog{};
    if (filter) {
        program_filter = build_seccomp_filter(*filter);
        prog.len = static_cast<unsigned short>(program_filter.size());
        prog.filter = program_filter.data();
    }
    std::string path = program("sysprobe");
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        if (filter && (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
                       ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0))
            ::_exit(120);
        ::execl(path.c_str(), path.c_str(), probe.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[256];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text.empty() ? "exit " + std::to_string(status) : text;
}

// A directory of the test's own, removed with everything in it.
struct TempDir {
    std::string path;
    explicit TempDir(mode_t mode) {
        char tmpl[] = "/tmp/mcpwarden-hard-XXXXXX";
        if (::mkdtemp(tmpl)) path = tmpl;
        ::chmod(path.c_str(), mode);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

std::string slurp(const std::string& path) {
    std::string text;
    mcpwarden::read_file(path, text);
    return text;
}

std::string pairs(const std::vector<std::string>& probes, const std::vector<std::string>& results) {
    std::string out;
    for (size_t i = 0; i < probes.size() && i < results.size(); ++i)
        out += (out.empty() ? "" : ", ") + probes[i] + ": " + results[i];
    return out;
}

}  // namespace

// ---- the seccomp filter's groups --------------------------------------------------------------

// Each probe with its arguments changes nothing even for root (see sysprobe.cpp); kexec_load
// is left out of the unfiltered run all the same.
TEST(SeccompFilter, RefusesEveryGroupEvenWithEveryCapability) {
    REQUIRE_ROOT();
    const std::vector<std::string> probes{
        "perf", "userfaultfd", "keyctl", "add_key", "open_by_handle_at", "mount", "umount", "fsopen",
        "pivot_root", "init_module", "finit_module", "delete_module", "reboot", "swapon",
        "clock_settime", "iopl", "ioperm", "uselib", "unshare-user", "clone-user", "tiocsti", "tiocsti-high"};
    SeccompOptions deny{};
    for (const auto& p : probes) {
        std::string bare = root_probe(p, nullptr);
        EXPECT_NE(bare, "EPERM") << p << " fails for root without the filter: the probe proves nothing";
        EXPECT_EQ(root_probe(p, &deny), "EPERM") << p << " (without the filter: " << bare << ")";
    }
    EXPECT_EQ(root_probe("kexec_load", &deny), "EPERM");
    // clone3's flags are out of the filter's reach: ENOSYS, so libcs fall back to clone.
    EXPECT_EQ(root_probe("clone3", nullptr), "EINVAL");
    EXPECT_EQ(root_probe("clone3", &deny), "ENOSYS");
    // Allowed user namespaces: clone, unshare and clone3 reach the kernel; the rest stays refused.
    SeccompOptions userns{.allow_user_namespaces = true};
    EXPECT_EQ(root_probe("unshare-user", &userns), "ok");
    EXPECT_EQ(root_probe("clone-user", &userns), "ok");
    EXPECT_EQ(root_probe("clone3", &userns), "EINVAL");
    EXPECT_EQ(root_probe("mount", &userns), "EPERM");
    EXPECT_EQ(root_probe("tiocsti", &userns), "EPERM");
}

TEST_F(Bypass, PerfEventsAndUserfaultfd) {
    part("hardening");
    attempt("perf_event_open (self-profiling, as perf_event_paranoid allows) and userfaultfd (user-mode faults), "
            "kernel interfaces behind many privilege escalations");
    const std::vector<std::string> probes{"perf", "userfaultfd"};
    auto control = nobody_probes(probes);
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, (std::vector<std::string>{"EPERM", "EPERM"}));
    outcome(join(lines) + " (seccomp); nobody outside a sandbox: " + pairs(probes, control));
}

TEST_F(Bypass, KeyringOfTheCaller) {
    part("hardening");
    attempt("keyctl / add_key: read the session keyring inherited from the caller, store a key in it");
    const std::vector<std::string> probes{"keyctl", "add_key"};
    auto control = nobody_probes(probes);
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, (std::vector<std::string>{"EPERM", "EPERM"}));
    outcome(join(lines) + " (seccomp); nobody outside a sandbox: " + pairs(probes, control));
}

TEST_F(Bypass, OpenByHandleAt) {
    part("hardening");
    attempt("open_by_handle_at (opens any inode of a filesystem by its handle, past every directory: the "
            "Docker 'shocker' escape)");
    auto lines = sandboxed_probes(open_policy(), {"open_by_handle_at"});
    EXPECT_EQ(lines, std::vector<std::string>{"EPERM"});
    SeccompOptions deny{};
    outcome(join(lines) + " (seccomp, before the kernel's capability check; root under the filter: " +
            root_probe("open_by_handle_at", &deny) + ", root without it: " + root_probe("open_by_handle_at", nullptr) + ")");
}

TEST_F(Bypass, MountCalls) {
    part("hardening");
    attempt("mount, umount2, fsopen, pivot_root (to undo the hidden /run, or reach mount code in a user namespace)");
    const std::vector<std::string> probes{"mount", "umount", "fsopen", "pivot_root"};
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, (std::vector<std::string>{"EPERM", "EPERM", "EPERM", "EPERM"}));
    outcome(join(lines) + " (seccomp, also with user namespaces allowed)");
}

TEST_F(Bypass, ModuleAndRebootCalls) {
    part("hardening");
    attempt("init_module, finit_module, delete_module, reboot, swapon, clock_settime, iopl, ioperm");
    const std::vector<std::string> probes{"init_module", "finit_module", "delete_module", "reboot",
                                          "swapon", "clock_settime", "iopl", "ioperm"};
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, std::vector<std::string>(probes.size(), "EPERM"));
    outcome(join(lines) + " (seccomp)");
}

TEST_F(Bypass, TerminalInputInjection) {
    part("hardening");
    attempt("ioctl TIOCSTI on a terminal (pushes a command into the shell that reads it), also with the "
            "request's high bits set");
    const std::vector<std::string> probes{"tiocsti", "tiocsti-high"};
    auto control = nobody_probes(probes);
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, (std::vector<std::string>{"EPERM", "EPERM"}));
    outcome(join(lines) + " (seccomp); nobody outside a sandbox, on its own controlling pty: " + pairs(probes, control));
}

TEST_F(Bypass, NewUserNamespace) {
    part("hardening");
    attempt("unshare(CLONE_NEWUSER) and clone(CLONE_NEWUSER): every capability inside a namespace of its own, "
            "and the kernel code they reach; clone3, whose flags a filter cannot read");
    const std::vector<std::string> probes{"unshare-user", "clone-user", "clone3"};
    auto control = nobody_probes(probes);
    auto lines = sandboxed_probes(open_policy(), probes);
    EXPECT_EQ(lines, (std::vector<std::string>{"EPERM", "EPERM", "ENOSYS"}));
    // The policy key gives them back (for servers running a browser's own sandbox).
    auto allowed = sandboxed_probes(
        write_policy("bypass-userns", "allow_user_namespaces: true\negress:\n  allow:\n    - cidr: 0.0.0.0/0\n"),
        {"unshare-user", "clone3"});
    if (control[0] == "ok") {
        EXPECT_EQ(allowed, (std::vector<std::string>{"ok", "EINVAL"}));
    }
    outcome(join(lines) + " (seccomp; clone3 ENOSYS so libcs fall back to clone); nobody outside a sandbox: " +
            pairs(probes, control) + "; with allow_user_namespaces: " + join(allowed));
}

// ---- files root writes ----------------------------------------------------------------------

TEST_F(Bypass, ReportThroughAPlantedLink) {
    part("hardening");
    attempt("the server plants a symlink at the --report/--audit path (in a world-writable directory, or "
            "replacing the report in a sticky one) pointing at a root-only file, for root to overwrite at the end");
    TempDir open_dir(0777), sticky(01777), private_dir(0700);
    std::string target = private_dir.path + "/root-only";
    std::ofstream(target) << "root's\n";
    ::chmod(target.c_str(), 0600);
    auto run = [&](const std::string& report, const std::string& audit, const std::string& script) {
        return command({MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--policy", lo_policy(), "--report", report,
                        "--audit", audit, "--", "sh", "-c", script});
    };
    // A world-writable directory that is not sticky: refused before the server runs.
    std::string plant = "ln -s " + target + " " + open_dir.path + "/report.json; ln -s " + target + " " +
                        open_dir.path + "/audit.jsonl; echo planted";
    auto refused = run(open_dir.path + "/report.json", state_dir() + "/hard-audit.jsonl", plant);
    EXPECT_EQ(refused.exit_code, 64) << refused.err;
    EXPECT_NE(refused.err.find("writable by other users"), std::string::npos) << refused.err;
    EXPECT_EQ(refused.out, "") << "the server never ran";
    // A link already there (planted by an earlier sandbox): not followed.
    ASSERT_EQ(::symlink(target.c_str(), (sticky.path + "/planted.json").c_str()), 0);
    auto link = run(sticky.path + "/planted.json", state_dir() + "/hard-audit.jsonl", "echo ran");
    EXPECT_EQ(link.exit_code, 64) << link.err;
    EXPECT_NE(link.err.find("symbolic link"), std::string::npos) << link.err;
    // A sticky directory (/tmp): root's report is created before the server starts, and the
    // server can neither remove nor replace it.
    std::string report = sticky.path + "/report.json", audit = sticky.path + "/audit.jsonl";
    std::string replace = "rm -f " + report + " " + audit + " 2>/dev/null; ln -sf " + target + " " + report +
                          " 2>/dev/null; ln -sf " + target + " " + audit + " 2>/dev/null; echo tried";
    auto ok = run(report, audit, replace);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    struct stat st {};
    ASSERT_EQ(::lstat(report.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_NE(slurp(report).find("\"status\":\"exited\""), std::string::npos) << slurp(report);
    EXPECT_EQ(slurp(target), "root's\n") << "the root-only file was written through a link";
    ::unlink(report.c_str());
    ::unlink(audit.c_str());
    ::unlink((sticky.path + "/planted.json").c_str());
    ::unlink((state_dir() + "/hard-audit.jsonl").c_str());
    outcome("refused (exit 64) in a world-writable directory and at a link; in a sticky one the report is root's "
            "from the start, the server's replacement failed; the root-only file is unchanged");
}

// ---- secrets and the command they are for ---------------------------------------------------

TEST_F(Bypass, PinnedPolicySecretThroughTheAgent) {
    part("hardening");
    attempt("a client of the agent names `-- /usr/bin/env` under a policy whose env.set reads a root-only token "
            "file, to print the token");
    TempDir dir(0755);
    std::string secret = dir.path + "/token";
    std::ofstream(secret) << "s3cret-token-value\n";
    ::chmod(secret.c_str(), 0600);
    std::filesystem::create_directories(dir.path + "/policies");
    std::string env = "env:\n  set:\n    API_TOKEN: {file: " + secret + "}\n";
    std::ofstream(dir.path + "/policies/pinned.yaml") << "name: pinned\ncommand: [sh, -c, \"echo pinned-ran\"]\n" << env;
    std::ofstream(dir.path + "/policies/unpinned.yaml") << "name: unpinned\n" << env;
    std::string user = "mwhard" + std::to_string(::getpid() % 100000);
    ASSERT_EQ(command({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", user}).exit_code, 0);
    struct UserGone {
        std::string name;
        ~UserGone() { command({"userdel", name}); }
    } gone{user};
    passwd* pw = ::getpwnam(user.c_str());
    ASSERT_NE(pw, nullptr);
    std::string socket = dir.path + "/agent.sock";
    std::ofstream(dir.path + "/agent.yaml") << "socket: " << socket << "\npolicy_dir: " << dir.path << "/policies\nstate_dir: "
                                            << state_dir() << "\nclients:\n  - user: " << user
                                            << "\n    policies: [pinned, unpinned]\n";
    AgentProcess agent;
    ASSERT_TRUE(agent.start(dir.path + "/agent.yaml", socket, dir.path + "/agent.log")) << slurp(dir.path + "/agent.log");
    auto as_client = [&](const std::string& policy, const std::vector<std::string>& cmd) {
        std::vector<std::string> argv{"setpriv", "--reuid=" + std::to_string(pw->pw_uid), "--regid=" + std::to_string(pw->pw_gid),
                                      "--clear-groups", MCPWARDEN_BIN, "run", "--agent", socket, "--policy", policy, "--"};
        argv.insert(argv.end(), cmd.begin(), cmd.end());
        return command(argv);
    };
    auto pinned = as_client("pinned", {"sh", "-c", "echo pinned-ran"});
    EXPECT_EQ(pinned.exit_code, 0) << pinned.err << slurp(dir.path + "/agent.log");
    EXPECT_EQ(pinned.out, "pinned-ran\n");
    auto env_cmd = as_client("pinned", {"/usr/bin/env"});
    EXPECT_EQ(env_cmd.exit_code, 67) << env_cmd.err;
    EXPECT_NE(env_cmd.err.find("runs only"), std::string::npos) << env_cmd.err;
    auto other_args = as_client("pinned", {"sh", "-c", "echo $API_TOKEN"});
    EXPECT_EQ(other_args.exit_code, 67) << other_args.err;
    auto unpinned = as_client("unpinned", {"/usr/bin/env"});
    EXPECT_EQ(unpinned.exit_code, 67) << unpinned.err;
    EXPECT_NE(unpinned.err.find("allow_unpinned_secrets"), std::string::npos) << unpinned.err;
    for (const auto* r : {&env_cmd, &other_args, &unpinned})
        EXPECT_EQ((r->out + r->err).find("s3cret-token-value"), std::string::npos) << "the token was printed";
    int status = agent.stop(SIGTERM);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    outcome("refused (exit 67, forbidden): the policy pins its command; the same secret under an unpinned policy "
            "is refused for clients; the token was printed nowhere; the pinned command runs");
}

// ---- bounded costs ----------------------------------------------------------------------------

TEST_F(Bypass, AuditFlood) {
    part("hardening");
    attempt("denied connects in a tight loop for 5 s, to make mcpwarden spend its CPU and the disk on audit lines");
    std::string audit = state_dir() + "/flood-audit.jsonl", report = state_dir() + "/flood-report.json",
                out = state_dir() + "/flood-out.txt";
    ::unlink(audit.c_str());
    pid_t pid = ::fork();
    if (pid == 0) {
        int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ::dup2(fd, 1);
        int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        ::dup2(null, 0);
        ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "run", "--state-dir", state_dir().c_str(), "--policy", lo_policy().c_str(),
                "--report", report.c_str(), "--audit", audit.c_str(), "--", program("sysprobe").c_str(), "flood-connect",
                "127.0.0.7", "9", "5", nullptr);
        ::_exit(127);
    }
    // mcpwarden's own CPU time (not the sandbox's: the server is its child) while the flood
    // runs: from its first audit line to the flood's end (the probe prints its figures), so
    // that the start (the verifier's load of the programs, seconds under emulation) and the
    // end are not counted as the flood's cost.
    double cpu0 = -1, cpu = -1, wall = 0;
    auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    auto size_of = [](const std::string& path) {
        struct stat s {};
        return ::stat(path.c_str(), &s) == 0 ? s.st_size : 0;
    };
    // (When the end is not seen before mcpwarden exits, the last sample ends the window.)
    double last_cpu = -1, last_wall = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        double now_cpu = cpu_seconds(pid);
        if (cpu0 < 0 && now_cpu >= 0 && size_of(audit) > 0) {
            cpu0 = now_cpu;
            t0 = std::chrono::steady_clock::now();
        }
        if (cpu0 >= 0 && now_cpu >= 0) {
            last_cpu = now_cpu - cpu0;
            last_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (cpu < 0 && size_of(out) > 0) {
                cpu = last_cpu;
                wall = last_wall;
            }
        }
        std::this_thread::sleep_for(20ms);
    }
    ASSERT_GE(cpu0, 0) << "no audit line while the flood ran";
    if (cpu < 0) {
        cpu = last_cpu;
        wall = last_wall;
    }
    ASSERT_GT(wall, 2.0) << "the flood's window was not observed";
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
    auto figures = split_lines(slurp(out));
    ASSERT_EQ(figures.size(), 1u) << slurp(out);
    std::istringstream in(figures[0]);
    unsigned long long tried = 0, denied = 0;
    in >> tried >> denied;
    auto j = nlohmann::json::parse(slurp(report), nullptr, false);
    struct stat st {};
    ::stat(audit.c_str(), &st);
    auto lines = read_audit(audit);
    unsigned long long summarised = 0, listed = 0;
    for (const auto& e : lines) {
        if (e["event"] == "audit_suppressed") summarised += e["suppressed"].get<unsigned long long>();
        else if (e["event"] == "egress_denied") ++listed;
    }
    EXPECT_GT(denied, 10000u) << "the flood was too small to show anything";
    EXPECT_EQ(j.value("egress_denied", 0ull), denied) << "the report's count is exact";
    // A small fraction of a core: the kernel rate-limits the events themselves, so a denial over
    // the limit is a counter in the sandbox state, never a ring-buffer record that wakes
    // mcpwarden's reader (docs/security.md, "Bounded costs").
    EXPECT_LT(cpu, 0.2 * wall) << cpu << " s of CPU in " << wall << " s";
    EXPECT_LT(st.st_size, 512 * 1024) << "audit file of " << st.st_size << " bytes";
    EXPECT_GT(summarised, 0u);
    EXPECT_EQ(listed + summarised + j.value("audit_events_lost", 0ull), denied)
        << "every denial is a line, counted in a summary, or counted as lost by the kernel";
    ::unlink(audit.c_str());
    ::unlink(report.c_str());
    ::unlink(out.c_str());
    char figure[200];
    std::snprintf(figure, sizeof figure, "%llu denials in 5 s: mcpwarden used %.2f s of CPU in %.1f s (%.0f%% of a core), audit file %lld KiB (%llu lines, %llu summarised); the report's count exact",
                  denied, cpu, wall, 100 * cpu / wall, static_cast<long long>(st.st_size / 1024), listed, summarised);
    outcome(figure);
}

TEST_F(Bypass, CacheFillsTheDisk) {
    part("hardening");
    attempt("the server writes 4 MiB into its persistent cache (the host's disk, kept from run to run), over its "
            "cache.max_size of 1 MiB, to fill the disk run after run");
    namespace fs = std::filesystem;
    std::string fill = "head -c 4194304 /dev/zero > $XDG_CACHE_HOME/fill-$$ && echo wrote";
    // on_full: trim (the default): the run's end takes the cache back under its bound.
    std::string policy = write_policy("bypass-cache", "cache:\n  max_size: 1M\n");
    auto trim = warden({"run", "--policy", policy, "--", "sh", "-c", fill});
    EXPECT_EQ(trim.exit_code, 0) << trim.err;
    EXPECT_EQ(trim.out, "wrote\n") << "the server could not write its cache: the attempt proves nothing";
    std::string trimmed = sandbox_cache_dir("bypass-cache");
    ASSERT_FALSE(trimmed.empty());
    std::uint64_t left = disk_use(trimmed);
    EXPECT_LE(left, 1u << 20);
    EXPECT_GE(trim.report["cache"]["trimmed_bytes"].get<std::uint64_t>(), 4u << 20) << trim.report.dump();
    // on_full: refuse: the over-full cache stays as it is and the next run is refused before
    // its server starts, so it cannot add more.
    std::string refuse = write_policy("bypass-cache-refuse", "cache:\n  max_size: 1M\n  on_full: refuse\n");
    auto first = warden({"run", "--policy", refuse, "--", "sh", "-c", fill});
    auto next = warden({"run", "--policy", refuse, "--", "sh", "-c", fill});
    std::string kept = sandbox_cache_dir("bypass-cache-refuse");
    EXPECT_EQ(first.exit_code, 0) << first.err;
    EXPECT_EQ(next.exit_code, 125) << next.err;
    EXPECT_NE(next.err.find("cache.max_size"), std::string::npos) << next.err;
    EXPECT_EQ(next.out, "") << "the refused run's server ran";
    EXPECT_EQ(directory_entries(kept), 1) << "the refused run wrote to the cache";
    std::uint64_t full = disk_use(kept);
    std::error_code ec;
    fs::remove_all(state_dir() + "/cache/bypass-cache", ec);
    fs::remove_all(state_dir() + "/cache/bypass-cache-refuse", ec);
    outcome("the run's end trimmed the cache to " + std::to_string(left >> 10) + " KiB (on_full: trim); with on_full: "
            "refuse the cache kept its " + std::to_string(full >> 10) + " KiB and the next run was refused (exit 125) "
            "before its server ran. Within one run the cache can exceed its bound until the run ends");
}

TEST_F(Bypass, ManyOpenFiles) {
    part("hardening");
    attempt("the server opens descriptors until the kernel refuses, to take the host's file-max (one 256 MiB "
            "sandbox held 47% of it)");
    auto dflt = sandboxed_probes(open_policy(), {"open-files"});
    auto low = sandboxed_probes(write_policy("bypass-nofile", "limits:\n  open_files: 64\n"), {"open-files"});
    // The test's own limit is what a server would have without the sandbox's.
    rlimit mine{};
    ::getrlimit(RLIMIT_NOFILE, &mine);
    EXPECT_EQ(dflt, std::vector<std::string>{"4096 EMFILE"}) << "the default limits.open_files";
    EXPECT_EQ(low, std::vector<std::string>{"64 EMFILE"});
    outcome("descriptors held when refused, and why: " + join(dflt) + " (the default limits.open_files), " + join(low) +
            " with limits.open_files: 64 (RLIMIT_NOFILE, per process, which the server cannot raise); "
            "the caller's own limit: " + std::to_string(mine.rlim_cur));
}

// ---- failing closed ---------------------------------------------------------------------------

TEST_F(Bypass, CommandPlantedUnderRun) {
    part("hardening");
    attempt("a local user plants a program in /run/lock (world-writable) for it to be started as a server: a "
            "command under /run once turned the hidden /run off, with only a warning");
    namespace fs = std::filesystem;
    bool made = !fs::exists("/run/lock");  // not every host (or VM guest) has one
    if (made) {
        fs::create_directories("/run/lock");
        ::chmod("/run/lock", 01777);
    }
    std::string cmd = "/run/lock/mw-planted-" + std::to_string(::getpid());
    auto planted = as_nobody({"sh", "-c", "printf '#!/bin/sh\\nls -A /run\\n' > " + cmd + " && chmod 755 " + cmd});
    auto r = warden({"run", "--policy", open_policy(), "--", cmd});
    ::unlink(cmd.c_str());
    std::error_code ec;
    if (made) fs::remove("/run/lock", ec);
    ASSERT_EQ(planted.exit_code, 0) << planted.err;
    EXPECT_EQ(r.exit_code, 125) << r.out << r.err;
    auto why = r.err.find("the command " + cmd + " lies in /run");
    EXPECT_NE(why, std::string::npos) << r.err;
    EXPECT_EQ(r.out, "") << "the planted program ran and listed /run";
    std::string message = why == std::string::npos ? r.err : r.err.substr(why);
    // The table shows no pid: its cell stays the same from run to run.
    if (auto at = message.find(cmd); at != std::string::npos) message.replace(at, cmd.size(), "/run/lock/PLANTED");
    outcome("refused (exit 125) before anything ran: " + message.substr(0, message.find(':')));
}
