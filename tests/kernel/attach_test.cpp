// SPDX-License-Identifier: Apache-2.0
// Cgroup-scoped deployments: `mcpwarden attach` / `detach` on a cgroup the test created, with
// a process already inside; real BPF programs, real loopback sockets.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <thread>

#include "cgroup.h"
#include "enforcer.h"
#include "fd.h"
#include "harness.h"
#include "mcpwarden.h"
#include "net_fixtures.h"
#include "sandbox_cache.h"
#include "test_cgroup.h"

using namespace harness;
using namespace netfix;
using namespace std::chrono_literals;

namespace {

int entries_of(std::uint64_t policy_id) { return static_cast<int>(mcpwarden::count_policy_entries(policy_id)); }

class Attach : public KernelTest {
protected:
    void TearDown() override {
        KernelTest::TearDown();
        if (::geteuid() != 0) return;
        // Nothing of an attachment stays in bpffs.
        DIR* d = ::opendir(mcpwarden::sandbox_pin_root().c_str());
        while (auto* e = d ? ::readdir(d) : nullptr) {
            EXPECT_NE(std::string(e->d_name).rfind("cg-", 0), 0u) << "pins of an attachment remain: " << e->d_name;
        }
        if (d) ::closedir(d);
    }
};

}  // namespace

namespace {

// A foreground `mcpwarden attach`: started, its first stdout line (the attachment) read.
class ForegroundAttach {
public:
    ForegroundAttach(const std::string& cgroup, const std::string& policy, const std::string& audit) {
        err_ = state_dir() + "/attach-err-" + std::to_string(::getpid()) + ".log";
        int out[2];
        EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ::dup2(e, 2);
            ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "--log-level", "info", "attach", "--cgroup", cgroup.c_str(),
                    "--policy", policy.c_str(), "--audit", audit.c_str(), nullptr);
            ::_exit(127);
        }
        ::close(out[1]);
        from_ = out[0];
        std::string line;
        char c;
        pollfd p{from_, POLLIN, 0};
        while (::poll(&p, 1, 20000) > 0 && ::read(from_, &c, 1) == 1 && c != '\n') line += c;
        first_line = line;
    }
    ~ForegroundAttach() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(from_);
        ::unlink(err_.c_str());
    }
    // Waits for the process to end; its exit status (128+N for signal N).
    int wait(std::chrono::seconds limit = 15s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        int status = 0;
        while (std::chrono::steady_clock::now() < deadline) {
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            }
            std::this_thread::sleep_for(10ms);
        }
        return -1;
    }
    bool log_has(const std::string& text, std::chrono::seconds limit = 10s) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            std::string log;
            mcpwarden::read_file(err_, log);
            if (log.find(text) != std::string::npos) return true;
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    std::string log() const {
        std::string log;
        mcpwarden::read_file(err_, log);
        return log;
    }
    pid_t pid() const { return pid_; }
    std::string first_line;

private:
    pid_t pid_ = -1;
    int from_ = -1;
    std::string err_;
};

bool pinned(const std::string& name) {
    return ::access((mcpwarden::sandbox_pin_root() + "/" + name).c_str(), F_OK) == 0;
}

}  // namespace

// A process started in the cgroup before attach: its new sockets are enforced after attach
// (the denied port refused, the allowed one works), a SIGHUP'd edit of the policy flips both
// verdicts for its next connections, and after detach nothing of ours is left.
TEST_F(Attach, AttachEnforcesAnExistingCgroupReloadsAndDetachRestores) {
    TcpListener first("127.0.0.2"), second("127.0.0.2");
    TestCgroup cg;
    ASSERT_EQ(cg.probe("127.0.0.2", first.port()), "ok");
    ASSERT_EQ(cg.probe("127.0.0.2", second.port()), "ok");
    std::string audit = state_dir() + "/attach-audit-" + std::to_string(::getpid()) + ".jsonl";
    ::unlink(audit.c_str());
    auto policy = write_policy("attached", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + first.port() + "]\n");
    ForegroundAttach fg(cg.path(), policy, audit);
    ASSERT_FALSE(fg.first_line.empty()) << fg.log();
    auto attached = nlohmann::json::parse(fg.first_line);
    EXPECT_EQ(attached["cgroup_id"], cg.id());
    std::string pin = "cg-" + std::to_string(cg.id());
    EXPECT_TRUE(pinned(pin));

    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "EPERM");
    EXPECT_EQ(second.accepted(), 1);  // only the connection before attach
    EXPECT_TRUE(fg.log_has("attached policy attached"));
    // Audit names the denial.
    bool seen = false;
    for (int i = 0; i < 200 && !seen; ++i) {
        seen = has_event(read_audit(audit), "127.0.0.2", std::stoi(second.port()));
        if (!seen) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(seen);

    // Attaching twice is refused and changes nothing.
    auto twice = warden({"attach", "--cgroup", cg.path(), "--policy", policy});
    EXPECT_EQ(twice.exit_code, 64) << twice.err;
    EXPECT_NE(twice.err.find("already has a policy attached"), std::string::npos) << twice.err;
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "EPERM");

    // Live update: the edited policy decides the next connections of the running process.
    write_policy("attached", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + second.port() + "]\n");
    ::kill(fg.pid(), SIGHUP);
    ASSERT_TRUE(fg.log_has("reloaded policy")) << fg.log();
    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "EPERM");
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "ok");
    // A broken edit changes nothing.
    write_policy("attached", "egress:\n  allow: [[\n");
    ::kill(fg.pid(), SIGHUP);
    ASSERT_TRUE(fg.log_has("not reloaded")) << fg.log();
    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "EPERM");
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "ok");

    auto d = warden({"detach", "--cgroup", cg.path()});
    EXPECT_EQ(d.exit_code, 0) << d.err;
    EXPECT_EQ(fg.wait(), 0) << fg.log();
    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "ok");
    EXPECT_FALSE(pinned(pin));
    EXPECT_EQ(entries_of(cg.id()), 0);
    auto again = warden({"detach", "--cgroup", cg.path()});
    EXPECT_EQ(again.exit_code, 64) << again.err;
    ::unlink(audit.c_str());
}

// The holder killed with SIGKILL: the attachment keeps enforcing (fail closed) until detach
// removes it.
TEST_F(Attach, AttachSurvivesItsHolderAndDetachCleansUp) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.2");
    TestCgroup cg;
    std::string audit = state_dir() + "/attach-audit-k-" + std::to_string(::getpid()) + ".jsonl";
    auto policy = write_policy("attached-k", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + allowed.port() + "]\n");
    {
        ForegroundAttach fg(cg.path(), policy, audit);
        ASSERT_FALSE(fg.first_line.empty()) << fg.log();
        ::kill(fg.pid(), SIGKILL);
        EXPECT_EQ(fg.wait(), 128 + SIGKILL);
    }
    EXPECT_EQ(cg.probe("127.0.0.2", denied.port()), "EPERM");
    EXPECT_EQ(cg.probe("127.0.0.2", allowed.port()), "ok");
    // A run sweeping stale sandboxes leaves an attachment alone.
    auto r = warden({"run", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(cg.probe("127.0.0.2", denied.port()), "EPERM");
    auto d = warden({"detach", "--cgroup", cg.path()});
    EXPECT_EQ(d.exit_code, 0) << d.err;
    EXPECT_EQ(cg.probe("127.0.0.2", denied.port()), "ok");
    EXPECT_FALSE(pinned("cg-" + std::to_string(cg.id())));
    EXPECT_EQ(entries_of(cg.id()), 0);
    ::unlink(audit.c_str());
}

TEST_F(Attach, AttachRefusesBadTargets) {
    auto policy = write_policy("attached-bad", "egress:\n  allow: []\n");
    std::string unified = mcpwarden::CgroupLayout::detect().unified_mount;
    for (const auto& target : {unified, std::string("/nonexistent/cgroup"), std::string("/tmp")}) {
        auto r = warden({"attach", "--cgroup", target, "--policy", policy});
        EXPECT_EQ(r.exit_code, 64) << target << ": " << r.err;
    }
    auto r = warden({"detach", "--cgroup", "/tmp"});
    EXPECT_EQ(r.exit_code, 64) << r.err;
}

// A run killed with SIGKILL leaves a daemon in its sandbox, confined by pinned links. An attach
// (like an agent's sandbox, a hosted bind that sweeps no sandbox cgroup) must leave those links
// alone: the daemon's connection is still refused afterwards. The next run sweeps it all.
TEST_F(Attach, AttachLeavesACrashedRunsDaemonConfined) {
    TcpListener l("127.0.0.2");
    std::string tag = std::to_string(::getpid());
    // The daemon and the test meet in the sandbox's cache, the host's directory (its /tmp is
    // its own).
    std::string out_name = "mw-stale-out-" + tag, go_name = "mw-stale-go-" + tag;
    auto policy = write_policy("crash-a", "egress:\n  allow: []\n");
    ASSERT_TRUE(crash_run(policy, "setsid sh -c 'while [ ! -e $XDG_CACHE_HOME/" + go_name + " ]; do sleep 0.05; done; " +
                                      program("netprobe") + " tcp4 127.0.0.2 " + l.port() + " > $XDG_CACHE_HOME/" +
                                      out_name + "' & sleep 300"));
    std::string out = sandbox_cache_dir("crash-a") + "/" + out_name, go = sandbox_cache_dir("crash-a") + "/" + go_name;

    {
        TestCgroup cg;
        std::string audit = state_dir() + "/attach-audit-s-" + tag + ".jsonl";
        auto attach_policy = write_policy("attached-s", "egress:\n  allow: []\n");
        ForegroundAttach fg(cg.path(), attach_policy, audit);
        ASSERT_FALSE(fg.first_line.empty()) << fg.log();
        auto d = warden({"detach", "--cgroup", cg.path()});
        EXPECT_EQ(d.exit_code, 0) << d.err;
        EXPECT_EQ(fg.wait(), 0) << fg.log();
        ::unlink(audit.c_str());
    }

    // The daemon tries to connect only now.
    std::ofstream(go).close();
    std::string result;
    for (int i = 0; i < 500 && result.empty(); ++i) {
        std::this_thread::sleep_for(10ms);
        mcpwarden::read_file(out, result);
    }
    // The daemon ended with its sandbox (its init ends the PID namespace when mcpwarden dies), or
    // it lives on confined: never connected.
    EXPECT_TRUE(result.empty() || result == "EPERM\n") << "the crashed run's daemon lost its confinement: " << result;
    EXPECT_EQ(l.accepted(), 0);

    auto r = warden({"run", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(leftover_processes().empty());
    EXPECT_TRUE(leftover_cgroups().empty());
    EXPECT_EQ(directory_entries(mcpwarden::sandbox_pin_root()), 0) << "pinned links of the crashed sandbox remain";
    ::unlink(out.c_str());
    ::unlink(go.c_str());
}

// A cgroup whose processes live in a network namespace of their own (a container on its own
// network): the attachment's resolver listens in that namespace, where the kernel redirects
// their port-53 flows, so host rules resolve and connect there as in mcpwarden's namespace;
// after detach no resolver socket is left in it.
TEST_F(Attach, HostRulesResolveInTheNetworkNamespaceOfTheCgroupsProcesses) {
    NetNs ns("mwattns");
    std::unique_ptr<TcpListener> http;  // allowed.test's address, inside the namespace only
    ns.inside([&] { http = std::make_unique<TcpListener>("127.0.0.2"); });
    ASSERT_TRUE(http);
    DnsStub upstream("127.0.0.153", 5353, 60, {"allowed.test=127.0.0.2", "other.test=127.0.0.3"});
    TestCgroup cg(ns.name);
    ASSERT_EQ(cg.probe("127.0.0.2", http->port()), "ok");  // its shell runs, in the namespace
    std::string audit = state_dir() + "/attach-audit-ns-" + std::to_string(::getpid()) + ".jsonl";
    ::unlink(audit.c_str());
    auto policy = write_policy("attached-ns", "egress:\n  allow:\n    - host: allowed.test\n      ports: [" +
                                                  http->port() +
                                                  "]\ndns:\n  upstream: [\"127.0.0.153:5353\"]\n  "
                                                  "allow_reserved_answers: true\n");
    ForegroundAttach fg(cg.path(), policy, audit);
    ASSERT_FALSE(fg.first_line.empty()) << fg.log();
    auto attached = nlohmann::json::parse(fg.first_line);
    EXPECT_EQ(attached["netns"], ns.inode()) << fg.first_line;
    int port = attached.value("dns_port", 0);
    ASSERT_NE(port, 0) << fg.first_line;
    auto ports = ns.udp_loopback_ports();
    EXPECT_NE(std::find(ports.begin(), ports.end(), port), ports.end()) << "no resolver on 127.0.0.1:" << port << " in the namespace";

    EXPECT_EQ(cg.resolve("allowed.test"), "127.0.0.2");
    EXPECT_EQ(cg.probe("127.0.0.2", http->port()), "ok");
    for (int i = 0; i < 100 && http->accepted() < 2; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(http->accepted(), 2);
    EXPECT_NE(cg.resolve("other.test"), "127.0.0.3");
    bool refused = false;
    for (int i = 0; i < 200 && !refused; ++i) {
        for (const auto& e : read_audit(audit))
            if (e.value("event", "") == "dns_refused" && e.value("name", "") == "other.test") refused = true;
        if (!refused) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(refused) << "no dns_refused line for other.test";

    auto d = warden({"detach", "--cgroup", cg.path()});
    EXPECT_EQ(d.exit_code, 0) << d.err;
    EXPECT_EQ(fg.wait(), 0) << fg.log();
    ports = ns.udp_loopback_ports();
    EXPECT_EQ(std::find(ports.begin(), ports.end(), port), ports.end()) << "the resolver's socket is left in the namespace";
    ::unlink(audit.c_str());
}

// One resolver serves one namespace: a cgroup with processes in two is refused, and nothing is
// attached.
TEST_F(Attach, ProcessesInTwoNetworkNamespacesAreRefused) {
    NetNs ns("mwattns2");
    TestCgroup cg(ns.name);
    pid_t other = ::fork();  // a second process of the cgroup, in mcpwarden's namespace
    if (other == 0) {
        int fd = ::open((cg.path() + "/cgroup.procs").c_str(), O_WRONLY);
        if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(126);
        ::pause();
        ::_exit(0);
    }
    std::string procs;
    for (int i = 0; i < 200 && procs.find(std::to_string(other)) == std::string::npos; ++i) {
        std::this_thread::sleep_for(5ms);
        mcpwarden::read_file(cg.path() + "/cgroup.procs", procs);
    }
    auto policy = write_policy("attached-ns2", "egress:\n  allow: []\n");
    Options opts;
    opts.kill_after = 30s;  // an attach that wrongly succeeds stays in the foreground
    auto r = warden({"attach", "--cgroup", cg.path(), "--policy", policy}, opts);
    ::kill(other, SIGKILL);
    ::waitpid(other, nullptr, 0);
    EXPECT_EQ(r.exit_code, 64) << r.err;
    EXPECT_NE(r.err.find("more than one network namespace"), std::string::npos) << r.err;
    EXPECT_FALSE(pinned("cg-" + std::to_string(cg.id())));
}
