// SPDX-License-Identifier: Apache-2.0
// The sandbox's own process view (a PID namespace whose PID 1 is mcpwarden-init) and its own
// session (setsid, a new session keyring): issue 11, items 2 and 4.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "isolation_pid.h"

using namespace harness;
using namespace isopid;

class Isolation : public KernelTest {};

namespace {

// `mcpwarden run -- sh -c SCRIPT` where $P is isoprobe; its stdout lines.
std::vector<std::string> probe_lines(const std::string& script, Result* result = nullptr) {
    auto r = warden({"run", "--", "sh", "-c", "P=" + program("isoprobe") + "; " + script});
    std::vector<std::string> lines;
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    if (result) *result = r;
    return lines;
}

bool refused(const std::string& line) { return line.rfind("errno ", 0) == 0; }

}  // namespace

TEST_F(Isolation, PidProcShowsOnlyTheSandbox) {
    Result r;
    auto lines = probe_lines("exec $P pids", &r);
    ASSERT_EQ(lines.size(), 1u) << r.out << r.err;
    // Its init and itself: nothing of the host, nothing of another sandbox.
    EXPECT_EQ(lines[0], "ok 1 2") << r.err;
    EXPECT_EQ(r.report["confinement"]["pid_namespace"], true) << r.report.dump();
}

TEST_F(Isolation, PidInitIsMcpwardenInit) {
    // The server may run before PID 1 has finished executing the init: look until it has.
    auto r = warden({"run", "--", "sh", "-c",
                     "i=0; while [ $i -lt 100000 ]; do c=$(cat /proc/1/comm); [ \"$c\" = mcpwarden-init ] && break; "
                     "i=$((i+1)); done; echo $c; echo $$"});
    EXPECT_EQ(r.out, "mcpwarden-init\n2\n") << r.err;
}

TEST_F(Isolation, PidAnotherSandboxsServerIsInvisibleAndUnsignalable) {
    VictimSandbox victim;
    ASSERT_GT(victim.server, 0) << "the other sandbox did not start";
    std::string pid = std::to_string(victim.server);
    Result r;
    auto lines = probe_lines("$P kill " + pid + "; $P read /proc/" + pid + "/environ", &r);
    ASSERT_EQ(lines.size(), 2u) << r.out << r.err;
    EXPECT_EQ(lines[0], "errno 3 (ESRCH)") << "kill of the other sandbox's server";
    EXPECT_EQ(lines[1], "errno 2 (ENOENT)") << "its environ";
    // The other sandbox is still there: nothing reached it.
    EXPECT_EQ(::kill(victim.server, 0), 0);
}

TEST_F(Isolation, PidHostProcessIsUnreachable) {
    // A host process of the very same uid as the server: only the sandbox stands between them.
    HostNobody host;
    std::string pid = std::to_string(host.pid);
    Result r;
    auto lines = probe_lines("$P read /proc/" + pid + "/environ; $P write-mem " + pid + "; $P readlink /proc/" +
                                 pid + "/root; $P list-fd " + pid + "; $P kill " + pid,
                             &r);
    ASSERT_EQ(lines.size(), 5u) << r.out << r.err;
    for (const auto& l : lines) EXPECT_TRUE(refused(l)) << l;
    EXPECT_EQ(lines[4], "errno 3 (ESRCH)");
}

TEST_F(Isolation, PidInitCannotBeReachedByTheServer) {
    // PID 1 is the init mcpwarden left in the sandbox: the server can neither read nor write
    // its memory, nor see its descriptors (the status pipe to mcpwarden), nor kill it.
    Result r;
    auto lines = probe_lines("$P read /proc/1/environ; $P write-mem 1; $P list-fd 1; kill -KILL 1; echo alive", &r);
    ASSERT_EQ(lines.size(), 4u) << r.out << r.err;
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(refused(lines[i])) << lines[i];
    EXPECT_EQ(lines[3], "alive");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(Isolation, PidOrphanedGrandchildIsReaped) {
    Result r;
    auto lines = probe_lines("exec $P orphan", &r);
    ASSERT_EQ(lines.size(), 1u) << r.out << r.err;
    EXPECT_EQ(lines[0], "ok reaped") << "the orphan stayed a zombie";
    EXPECT_EQ(r.exit_code, 0);
}

TEST_F(Isolation, PidExitCodeAndSignalAreTheServers) {
    auto exited = warden({"run", "--", "sh", "-c", "exit 7"});
    EXPECT_EQ(exited.exit_code, 7) << exited.err;
    EXPECT_EQ(exited.report["status"], "exited");
    EXPECT_EQ(exited.report["exit_code"], 7);
    auto killed = warden({"run", "--", "sh", "-c", "kill -SEGV $$"});
    EXPECT_EQ(killed.exit_code, 128 + SIGSEGV) << killed.err;
    EXPECT_EQ(killed.report["status"], "signaled");
    EXPECT_EQ(killed.report["signal"], SIGSEGV);
}

TEST_F(Isolation, PidSigtermOfWardenReachesTheServerThroughTheInit) {
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    std::string report = state_dir() + "/sigterm-report.json";
    std::string probe = program("isoprobe");
    pid_t pid = ::fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(out[1], 1);
        ::dup2(null, 2);
        ::execl(MCPWARDEN_BIN, MCPWARDEN_BIN, "run", "--state-dir", state_dir().c_str(), "--report",
                report.c_str(), "--", probe.c_str(), "term-handler", nullptr);
        ::_exit(127);
    }
    ::close(out[1]);
    std::string seen;
    bool ready = read_until(out[0], seen, "ready\n");
    ::kill(pid, SIGTERM);
    bool handled = ready && read_until(out[0], seen, "handled\n");
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(out[0]);
    ASSERT_TRUE(ready) << seen;
    EXPECT_TRUE(handled) << "the server's SIGTERM handler did not run: " << seen;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM) << status;
    nlohmann::json j;
    std::ifstream(report) >> j;
    ::unlink(report.c_str());
    EXPECT_EQ(j["status"], "interrupted") << j.dump();
    EXPECT_EQ(j["signal"], SIGTERM);
    EXPECT_EQ(j["server_exit"]["exit_code"], 3) << "the server's own exit after its handler: " << j.dump();
}

TEST_F(Isolation, SessionTiocstiDoesNotReachTheInvokingShell) {
    auto o = tiocsti_through_sandbox(true);
    ASSERT_TRUE(o.shell_ok) << o.transcript;
    EXPECT_FALSE(o.ran) << "the shell ran what the server pushed into its terminal:\n" << o.transcript;
    // No controlling terminal (setsid): the kernel refuses TIOCSTI on a tty not its own.
    EXPECT_TRUE(refused(o.probe_line)) << o.probe_line << "\n" << o.transcript;
}

TEST_F(Isolation, SessionCallersKeyringIsUnreachable) {
    auto r = run_with_session_key("mcpwarden-test-key", "secret-of-the-caller",
                                  {"key-read @KEY", "key-search mcpwarden-test-key"});
    ASSERT_GT(r.key, 0);
    ASSERT_TRUE(WIFEXITED(r.status)) << r.status;
    EXPECT_EQ(r.out.find("secret-of-the-caller"), std::string::npos) << r.out;
    std::istringstream in(r.out);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_TRUE(refused(lines[0])) << "reading the caller's key by id: " << lines[0];
    EXPECT_TRUE(refused(lines[1])) << "finding it in the session keyring: " << lines[1];
}
