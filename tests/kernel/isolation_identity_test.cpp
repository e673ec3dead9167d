// SPDX-License-Identifier: Apache-2.0
// A uid of its own per (policy, client) pair (issue 11, item 1): real sandboxes, real kill(2),
// the real agent with two clients, and the fixed accounts that must be refused.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent_client.h"
#include "agent_process.h"
#include "fd.h"
#include "harness.h"

using namespace harness;
using namespace std::chrono_literals;

namespace {

// The first process in a sandbox cgroup named `comm` (the server, as the host sees it: its host
// pid even when the sandbox has a PID namespace of its own) and its uid, waited for up to 30 s.
struct Found {
    pid_t pid = -1;
    uid_t uid = 0;
};
Found wait_for_sandboxed(const std::string& comm, const std::vector<pid_t>& except = {}) {
    auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
        for (pid_t pid : leftover_processes()) {
            if (std::find(except.begin(), except.end(), pid) != except.end()) continue;
            std::string c, status;
            if (!mcpwarden::read_file("/proc/" + std::to_string(pid) + "/comm", c) || c != comm + "\n") continue;
            if (!mcpwarden::read_file("/proc/" + std::to_string(pid) + "/status", status)) continue;
            auto at = status.find("\nUid:\t");
            if (at == std::string::npos) continue;
            return {pid, static_cast<uid_t>(std::stoul(status.substr(at + 6)))};
        }
        std::this_thread::sleep_for(10ms);
    }
    return {};
}

// `argv` started in the background (stdio /dev/null), ended with SIGTERM by the destructor.
class Background {
public:
    explicit Background(const std::vector<std::string>& argv) {
        pid_ = ::fork();
        if (pid_ == 0) {
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            ::execvp(args[0], args.data());
            ::_exit(127);
        }
    }
    ~Background() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }

private:
    pid_t pid_ = -1;
};

// kill(pid, sig) from a process of `uid` outside any sandbox, in the host's PID namespace:
// the errno (0 = delivered).
int kill_as(uid_t uid, pid_t pid, int sig) {
    int fds[2];
    if (::pipe(fds) != 0) return -1;
    pid_t child = ::fork();
    if (child == 0) {
        int err = 0;
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) err = -2;
        else if (::kill(pid, sig) != 0) err = errno;
        (void)!::write(fds[1], &err, sizeof err);
        ::_exit(0);
    }
    ::close(fds[1]);
    int err = -1;
    (void)!::read(fds[0], &err, sizeof err);
    ::close(fds[0]);
    ::waitpid(child, nullptr, 0);
    return err;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

std::string policy_file(const std::string& name, const std::string& body = "") {
    std::string path = state_dir() + "/" + name + ".yaml";
    std::ofstream(path) << "name: " << name << "\n" << body;
    return path;
}

std::vector<std::string> run_args(const std::string& policy, const std::string& script) {
    return {MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--policy", policy, "--", "sh", "-c", script};
}

}  // namespace

class Isolation : public KernelTest {};

TEST_F(Isolation, IdentityTwoPoliciesRunAsDifferentUidsAndCannotSignalEachOther) {
    Background victim(run_args(policy_file("id-victim"), "exec sleep 60"));
    Found v = wait_for_sandboxed("sleep");
    ASSERT_GT(v.pid, 0) << "the victim's server did not start";
    // Another policy's server tries to kill it, then says who it is.
    auto attacker = warden({"run", "--policy", policy_file("id-attacker"), "--", "sh", "-c",
                            "kill -9 " + std::to_string(v.pid) + " 2>/dev/null && echo KILLED; id -u"});
    ASSERT_EQ(attacker.exit_code, 0) << attacker.err;
    uid_t attacker_uid = attacker.report.value("uid", 0u);
    EXPECT_EQ(attacker.out, std::to_string(attacker_uid) + "\n");
    EXPECT_NE(attacker_uid, v.uid);
    EXPECT_NE(v.uid, 65534u);
    EXPECT_GE(v.uid, 1879048192u);  // the default range
    EXPECT_TRUE(alive(v.pid));
    // The same uid outside any sandbox, in the host's PID namespace: refused by the kernel.
    EXPECT_EQ(kill_as(attacker_uid, v.pid, SIGKILL), EPERM);
    EXPECT_EQ(kill_as(attacker_uid, v.pid, SIGTERM), EPERM);
    EXPECT_TRUE(alive(v.pid));
    // The control: the victim's own uid may signal it (0 is a probe, not a kill).
    EXPECT_EQ(kill_as(v.uid, v.pid, 0), 0);
}

TEST_F(Isolation, IdentityTheSamePairGetsItsUidAndCacheBackAndNoOtherPairReachesIt) {
    std::string policy = policy_file("id-cache");
    auto first = warden({"run", "--policy", policy, "--", "sh", "-c",
                         "echo mine > \"$XDG_CACHE_HOME/marker\" && echo \"$XDG_CACHE_HOME\""});
    ASSERT_EQ(first.exit_code, 0) << first.err;
    uid_t uid = first.report.value("uid", 0u);
    std::string cache = state_dir() + "/cache/id-cache/" + std::to_string(uid);
    EXPECT_EQ(first.out, cache + "\n");
    struct stat st {};
    ASSERT_EQ(::lstat(cache.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, uid);
    EXPECT_EQ(st.st_gid, uid);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    for (const auto& parent : {state_dir() + "/cache", state_dir() + "/cache/id-cache"}) {
        ASSERT_EQ(::lstat(parent.c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 0u) << parent;
        EXPECT_EQ(st.st_mode & 0022, 0u) << parent;
    }

    auto second = warden({"run", "--policy", policy, "--", "sh", "-c", "id -u; cat \"$XDG_CACHE_HOME/marker\""});
    ASSERT_EQ(second.exit_code, 0) << second.err;
    EXPECT_EQ(second.report.value("uid", 0u), uid);
    EXPECT_EQ(second.out, std::to_string(uid) + "\nmine\n");

    // Another policy's server: neither reads nor writes nor lists it.
    auto other = warden({"run", "--policy", policy_file("id-intruder"), "--", "sh", "-c",
                         "cat " + cache + "/marker 2>/dev/null && echo READ; "
                         "echo evil > " + cache + "/planted 2>/dev/null && echo WROTE; "
                         "ls " + cache + " >/dev/null 2>&1 && echo LISTED; "
                         "mkdir " + cache + "/npm 2>/dev/null && echo MADE; echo done"});
    EXPECT_EQ(other.out, "done\n") << other.err;
    EXPECT_NE(other.report.value("uid", 0u), uid);
    EXPECT_NE(::access((cache + "/planted").c_str(), F_OK), 0);
    std::filesystem::remove_all(state_dir() + "/cache/id-cache");
    std::filesystem::remove_all(state_dir() + "/cache/id-intruder");
}

TEST_F(Isolation, IdentityRootMinusOneAndLoginAccountsAreRefused) {
    for (const char* user : {"0", "root", "4294967295", "4294967296", "-1"}) {
        auto r = warden({"run", std::string("--user=") + user, "--", "id", "-u"});
        EXPECT_EQ(r.exit_code, 64) << user << ": " << r.out << r.err;
        EXPECT_EQ(r.out, "") << user << " ran";
        EXPECT_TRUE(r.err.find("root") != std::string::npos || r.err.find("not a valid uid") != std::string::npos)
            << user << ": " << r.err;
    }
    // A login account (a shell, a home under /home), created here and removed at the end.
    std::string login = "mwlogin" + std::to_string(::getpid() % 100000);
    auto made = command({"useradd", "--no-create-home", "--home-dir", "/home/" + login, "--shell", "/bin/sh", login});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    auto r = warden({"run", "--user", login, "--", "id", "-u"});
    EXPECT_EQ(r.exit_code, 64) << r.out << r.err;
    EXPECT_NE(r.err.find("login shell"), std::string::npos) << r.err;
    // A policy naming it, and one naming -1: `policy validate` points at the field.
    std::string bad_login = policy_file("id-login", "user: " + login + "\n");
    std::string minus_one = policy_file("id-minus-one", "user: \"4294967295\"\n");
    auto v = warden({"policy", "validate", bad_login, minus_one});
    EXPECT_EQ(v.exit_code, 1) << v.out << v.err;
    EXPECT_NE(v.err.find(bad_login + ":2:7: user '" + login + "' has a login shell"), std::string::npos) << v.err;
    EXPECT_NE(v.err.find(minus_one + ":2:7: user '4294967295' is not a valid uid"), std::string::npos) << v.err;
    // And `run` with such a policy refuses before anything starts.
    auto p = warden({"run", "--policy", minus_one, "--", "id", "-u"});
    EXPECT_NE(p.exit_code, 0);
    EXPECT_EQ(p.out, "");
    command({"userdel", login});
}

TEST_F(Isolation, IdentityAUidOfTheRangeCannotBeChosenAsAFixedUser) {
    auto own = warden({"run", "--policy", policy_file("id-own"), "--", "true"});
    ASSERT_EQ(own.exit_code, 0) << own.err;
    auto r = warden({"run", "--user", std::to_string(own.report.value("uid", 0u)), "--", "id", "-u"});
    EXPECT_EQ(r.exit_code, 64) << r.out << r.err;
    EXPECT_NE(r.err.find("range of the sandboxes' own uids"), std::string::npos) << r.err;
    std::filesystem::remove_all(state_dir() + "/cache/id-own");
}

// Two clients of one policy through the agent: two uids, two caches, no signal between them.
class IsolationAgent : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        char tmpl[] = "/tmp/mcpwarden-idagent-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        ::chmod(dir_.c_str(), 0755);
        std::filesystem::create_directories(dir_ + "/policies");
        std::filesystem::create_directories(dir_ + "/out");
        ::chmod((dir_ + "/out").c_str(), 01777);
        std::ofstream(dir_ + "/policies/shared.yaml") << "name: shared\n";
        std::ofstream(dir_ + "/agent.yaml")
            << "socket: " << dir_ << "/agent.sock\npolicy_dir: " << dir_ << "/policies\nstate_dir: " << state_dir()
            << "\nclients:\n  - uid: " << kAlice << "\n    policies: [shared]\n  - uid: " << kBob
            << "\n    policies: [shared]\n";
        ASSERT_TRUE(agent_.start(dir_ + "/agent.yaml", dir_ + "/agent.sock", dir_ + "/agent.log")) << log();
    }
    void TearDown() override {
        agent_.stop(SIGTERM);
        std::filesystem::remove_all(dir_);
        std::filesystem::remove_all(state_dir() + "/cache/shared");
        KernelTest::TearDown();
    }
    std::string log() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/agent.log", s);
        return s;
    }
    // `mcpwarden run --agent` as the client `uid` (no passwd entry needed).
    std::vector<std::string> as_client(uid_t uid, const std::string& report, const std::string& script) const {
        return {"setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid), "--clear-groups",
                MCPWARDEN_BIN, "run", "--agent", dir_ + "/agent.sock", "--report", report, "--policy", "shared",
                "--", "sh", "-c", script};
    }
    Result run_client(uid_t uid, const std::string& script) {
        std::string report = dir_ + "/out/r-" + std::to_string(++reports_) + ".json";
        Result r = command(as_client(uid, report, script));
        std::ifstream in(report);
        if (in) {
            try {
                in >> r.report;
            } catch (...) {
            }
        }
        return r;
    }
    static constexpr uid_t kAlice = 4242, kBob = 4243;
    std::string dir_;
    AgentProcess agent_;
    int reports_ = 0;
};

TEST_F(IsolationAgent, IdentityTwoClientsOfOnePolicyGetTwoUidsTwoCachesAndNoSignal) {
    auto alice = run_client(kAlice, "echo alice > \"$XDG_CACHE_HOME/marker\"; echo \"$XDG_CACHE_HOME\"");
    ASSERT_EQ(alice.exit_code, 0) << alice.err << log();
    uid_t alice_uid = alice.report.value("uid", 0u);
    std::string alice_cache = state_dir() + "/cache/shared/" + std::to_string(alice_uid);
    EXPECT_EQ(alice.out, alice_cache + "\n");
    // Bob's server: another uid, and alice's cache is out of its reach.
    auto bob = run_client(kBob, "id -u; cat " + alice_cache + "/marker 2>/dev/null && echo READ; "
                                "echo evil > " + alice_cache + "/planted 2>/dev/null && echo WROTE; true");
    ASSERT_EQ(bob.exit_code, 0) << bob.err << log();
    uid_t bob_uid = bob.report.value("uid", 0u);
    EXPECT_NE(bob_uid, alice_uid);
    EXPECT_EQ(bob.out, std::to_string(bob_uid) + "\n");
    EXPECT_NE(::access((alice_cache + "/planted").c_str(), F_OK), 0);
    // Alice's next run is hers again, cache included.
    auto again = run_client(kAlice, "cat \"$XDG_CACHE_HOME/marker\"");
    EXPECT_EQ(again.out, "alice\n") << again.err;
    EXPECT_EQ(again.report.value("uid", 0u), alice_uid);

    // Alice's server running; bob's uid, in the host PID namespace, cannot signal it.
    std::string report = dir_ + "/out/bg.json";
    Background running(as_client(kAlice, report, "exec sleep 60"));
    Found v = wait_for_sandboxed("sleep");
    ASSERT_GT(v.pid, 0) << log();
    EXPECT_EQ(v.uid, alice_uid);
    EXPECT_EQ(kill_as(bob_uid, v.pid, SIGKILL), EPERM);
    EXPECT_TRUE(alive(v.pid));
    // `ps` shows the server's uid.
    auto ps = command({MCPWARDEN_BIN, "ps", "--agent", dir_ + "/agent.sock", "--json"});
    std::string id = std::to_string(alice_uid);
    bool listed = ps.out.find("\"server_uid\":" + id) != std::string::npos &&
                  ps.out.find("\"server_user\":\"mcpwarden-" + id + "\"") != std::string::npos;
    EXPECT_TRUE(listed) << "alice " << alice_uid << ", server pid " << v.pid << " uid " << v.uid << ": " << ps.out << ps.err;
    auto text = command({MCPWARDEN_BIN, "ps", "--agent", dir_ + "/agent.sock"});
    EXPECT_NE(text.out.find("mcpwarden-" + std::to_string(alice_uid)), std::string::npos) << text.out;
}
