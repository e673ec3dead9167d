// SPDX-License-Identifier: Apache-2.0
// Bypass attempts against the per-(policy, client) identity (docs/security.md, part
// "isolation"): become root through uid -1, kill another policy's server, plant code in
// another client's cache through the agent.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent_process.h"
#include "bypass_common.h"

using namespace harness;
using namespace bypass;
using namespace std::chrono_literals;

namespace {

// What sh's kill said: EPERM, ESRCH, or ok.
std::string kill_outcome(const std::string& out) {
    if (out.find("Operation not permitted") != std::string::npos) return "EPERM";
    if (out.find("No such process") != std::string::npos) return "ESRCH";
    if (out.find("KILLED") != std::string::npos) return "ok";
    return "?" + out;
}

// The pid of the first sandboxed process named `comm`, waited for up to 30 s.
pid_t sandboxed_pid(const std::string& comm) {
    auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
        for (pid_t pid : leftover_processes()) {
            std::string c;
            if (mcpwarden::read_file("/proc/" + std::to_string(pid) + "/comm", c) && c == comm + "\n") return pid;
        }
        std::this_thread::sleep_for(10ms);
    }
    return -1;
}

pid_t start_quiet(const std::vector<std::string>& argv) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3; ++fd) ::dup2(null, fd);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    return pid;
}

void stop(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
}

}  // namespace

TEST_F(Bypass, RootThroughUidMinusOne) {
    part("isolation");
    attempt("run the server as uid 4294967295 (-1: \"no change\" to setresuid, so it would stay root) with "
            "--user 4294967295 or a policy's user: \"4294967295\", then leave the cgroup");
    std::string escape = "id -u; echo $$ > /sys/fs/cgroup/unified/cgroup.procs 2>/dev/null && echo ESCAPED; "
                         "echo $$ > /sys/fs/cgroup/cgroup.procs 2>/dev/null && echo ESCAPED";
    auto flag = warden({"run", "--user", "4294967295", "--", "sh", "-c", escape});
    EXPECT_EQ(flag.exit_code, 64) << flag.out << flag.err;
    EXPECT_EQ(flag.out, "");
    EXPECT_NE(flag.err.find("not a valid uid"), std::string::npos) << flag.err;
    std::string policy = write_policy("bypass-minus-one", "user: \"4294967295\"\n");
    auto pol = warden({"run", "--policy", policy, "--", "sh", "-c", escape});
    EXPECT_NE(pol.exit_code, 0);
    EXPECT_EQ(pol.out, "");
    EXPECT_NE(pol.err.find(policy + ":2:7"), std::string::npos) << pol.err;
    outcome("refused before anything runs: exit " + std::to_string(flag.exit_code) + " (--user), exit " +
            std::to_string(pol.exit_code) + " naming " + "the policy's user: at file:2:7");
}

TEST_F(Bypass, KillAnotherPolicysServer) {
    part("isolation");
    attempt("kill -9 the server of a sandbox of another policy (its pid found in /proc or guessed)");
    std::string victim_policy = write_policy("bypass-victim", "");
    pid_t mw = start_quiet({MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--policy", victim_policy, "--",
                            "sh", "-c", "exec sleep 60"});
    pid_t victim = sandboxed_pid("sleep");
    ASSERT_GT(victim, 0);
    auto s = warden({"run", "--policy", write_policy("bypass-killer", ""), "--", "sh", "-c",
                     "kill -9 " + std::to_string(victim) + " 2>&1 && echo KILLED; kill -STOP " +
                         std::to_string(victim) + " 2>&1 && echo KILLED; true"});
    std::string what = kill_outcome(s.out);
    EXPECT_TRUE(what == "EPERM" || what == "ESRCH") << s.out << s.err;
    EXPECT_EQ(s.out.find("KILLED"), std::string::npos) << s.out;
    EXPECT_EQ(::kill(victim, 0), 0) << "the victim's server is gone";
    std::string status;
    mcpwarden::read_file("/proc/" + std::to_string(victim) + "/stat", status);
    EXPECT_EQ(status.find(") T"), std::string::npos) << "the victim was stopped";
    // The control: the same kill from the victim's own uid outside a sandbox works (signal 0).
    std::string uid;
    mcpwarden::read_file("/proc/" + std::to_string(victim) + "/status", uid);
    uid = uid.substr(uid.find("\nUid:\t") + 6);
    uid = uid.substr(0, uid.find('\t'));
    auto control = command({"setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "kill", "-0",
                            std::to_string(victim)});
    EXPECT_EQ(control.exit_code, 0) << control.err;
    stop(mw);
    outcome(what + " (the servers run as different uids: " + uid + " and " +
            std::to_string(s.report.value("uid", 0u)) + "); the victim's own uid can signal it");
}

TEST_F(Bypass, PlantCodeInAnotherClientsCacheThroughTheAgent) {
    part("isolation");
    attempt("through the agent, write a package into another client's cache of the same policy (its next "
            "npx run would execute it with that client's token)");
    char tmpl[] = "/tmp/mcpwarden-bypass-agent-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string dir = tmpl;
    ::chmod(dir.c_str(), 0755);
    std::filesystem::create_directories(dir + "/policies");
    std::filesystem::create_directories(dir + "/out");
    ::chmod((dir + "/out").c_str(), 01777);
    std::ofstream(dir + "/policies/npx.yaml") << "name: npx\n";
    std::ofstream(dir + "/agent.yaml") << "socket: " << dir << "/agent.sock\npolicy_dir: " << dir
                                       << "/policies\nstate_dir: " << state_dir()
                                       << "\nclients:\n  - uid: 4252\n    policies: [npx]\n  - uid: 4253\n    policies: [npx]\n";
    AgentProcess agent;
    ASSERT_TRUE(agent.start(dir + "/agent.yaml", dir + "/agent.sock", dir + "/agent.log"));
    auto as_client = [&](uid_t uid, const std::string& script) {
        std::string report = dir + "/out/" + std::to_string(uid) + ".json";
        Result r = command({"setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
                            "--clear-groups", MCPWARDEN_BIN, "run", "--agent", dir + "/agent.sock", "--report", report,
                            "--policy", "npx", "--", "sh", "-c", script});
        std::ifstream in(report);
        try {
            in >> r.report;
        } catch (...) {
        }
        return r;
    };
    auto victim = as_client(4252, "mkdir -p \"$npm_config_cache\" && echo \"$npm_config_cache\"");
    ASSERT_EQ(victim.exit_code, 0) << victim.err;
    std::string npm = victim.out.substr(0, victim.out.find('\n'));
    auto attacker = as_client(4253, "echo 'require(\"child_process\").exec(\"steal\")' > " + npm +
                                        "/index.js 2>&1 || true; mkdir " + npm + "/_cacache 2>&1 || true; "
                                        "ls " + npm + " 2>&1 || true");
    std::string out = attacker.out;
    EXPECT_EQ(::access((npm + "/index.js").c_str(), F_OK), -1) << out;
    EXPECT_EQ(::access((npm + "/_cacache").c_str(), F_OK), -1) << out;
    EXPECT_NE(out.find(out.find("Permission denied") != std::string::npos ? "Permission denied" : "No such file"),
              std::string::npos) << out;
    EXPECT_NE(victim.report.value("uid", 0u), attacker.report.value("uid", 0u));
    agent.stop(SIGTERM);
    std::filesystem::remove_all(dir);
    std::filesystem::remove_all(state_dir() + "/cache/npx");
    outcome(std::string(out.find("Permission denied") != std::string::npos ? "EACCES" : "ENOENT") +
            ": the other client's cache is 0700 and owned by its own uid (" +
            std::to_string(victim.report.value("uid", 0u)) + ", the attacker's " +
            std::to_string(attacker.report.value("uid", 0u)) + ")");
}
