// SPDX-License-Identifier: Apache-2.0
// Bypass attempts on the process view and the session (docs/security.md, part "isolation"):
// one sandbox against another sandbox's server, and a server against the terminal and the
// session keyring of whoever started mcpwarden.
#include <sys/stat.h>

#include "bypass_common.h"
#include "isolation_pid.h"

using namespace bypass;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// The attacker: a sandbox (the default policy) running isoprobe with ARGS.
std::vector<std::string> attacker(const std::vector<std::string>& args, Result* r = nullptr) {
    std::vector<std::string> argv = {"run", "--", program("isoprobe")};
    argv.insert(argv.end(), args.begin(), args.end());
    auto res = warden(argv);
    if (r) *r = res;
    return lines_of(res.out);
}

}  // namespace

TEST_F(Bypass, IsolationKillAnotherSandboxsServer) {
    part("isolation");
    attempt("kill the server of another sandbox by its host pid");
    isopid::VictimSandbox victim;
    ASSERT_GT(victim.server, 0) << "the victim sandbox did not start";
    // The control: a process of the victim's own uid outside any sandbox signals it.
    struct stat st {};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(victim.server)).c_str(), &st), 0);
    std::string id = std::to_string(st.st_uid);
    auto control = command({"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", program("isoprobe"), "kill",
                            std::to_string(victim.server)});
    EXPECT_EQ(control.out, "ok signalled\n") << "control: its uid outside a sandbox signals it " << control.err;
    Result r;
    auto lines = attacker({"kill", std::to_string(victim.server)}, &r);
    EXPECT_EQ(lines, std::vector<std::string>{"errno 3 (ESRCH)"}) << r.err;
    EXPECT_EQ(::kill(victim.server, 0), 0) << "the victim is gone";
    outcome(join(lines) + ": each sandbox has its own PID namespace; no pid of another one exists in it");
}

TEST_F(Bypass, IsolationReadAnotherSandboxsEnviron) {
    part("isolation");
    attempt("read /proc/PID/environ of another sandbox's server (its token)");
    isopid::VictimSandbox victim;
    ASSERT_GT(victim.server, 0) << "the victim sandbox did not start";
    std::string path = "/proc/" + std::to_string(victim.server) + "/environ";
    Result r;
    auto lines = attacker({"read", path}, &r);
    ASSERT_EQ(lines.size(), 1u) << r.out << r.err;
    EXPECT_EQ(lines[0], "errno 2 (ENOENT)") << r.err;
    EXPECT_EQ(r.out.find("secret-of-the-victim"), std::string::npos);
    outcome(join(lines) + ": the sandbox's /proc is its PID namespace's own");
}

TEST_F(Bypass, IsolationWriteAnotherSandboxsMem) {
    part("isolation");
    attempt("open /proc/PID/mem of another sandbox's server for writing (code injection)");
    isopid::VictimSandbox victim;
    ASSERT_GT(victim.server, 0) << "the victim sandbox did not start";
    Result r;
    auto lines = attacker({"write-mem", std::to_string(victim.server)}, &r);
    ASSERT_EQ(lines.size(), 1u) << r.out << r.err;
    EXPECT_EQ(lines[0], "errno 2 (ENOENT)") << r.err;
    outcome(join(lines) + ": not in the sandbox's /proc; a Landlock domain per server refuses ptrace access "
                          "outside it besides");
}

TEST_F(Bypass, IsolationTiocstiIntoTheInvokingTerminal) {
    part("isolation");
    attempt("push a command into the invoking interactive shell's terminal (TIOCSTI on inherited stdin)");
    auto control = isopid::tiocsti_through_sandbox(false);
    ASSERT_TRUE(control.shell_ok) << control.transcript;
    EXPECT_TRUE(control.ran) << "control: nobody in the shell's session injects a command " << control.transcript;
    auto o = isopid::tiocsti_through_sandbox(true);
    ASSERT_TRUE(o.shell_ok) << o.transcript;
    EXPECT_FALSE(o.ran) << o.transcript;
    EXPECT_EQ(o.probe_line.rfind("errno ", 0), 0u) << o.probe_line;
    outcome(o.probe_line + ", the shell ran nothing: the server has a session of its own (setsid), the "
                           "terminal is not its controlling terminal");
}

TEST_F(Bypass, IsolationReadTheCallersKeyring) {
    part("isolation");
    attempt("read a key from the session keyring of whoever started mcpwarden (keyctl read / search)");
    std::string control = isopid::key_read_as_nobody_in_own_session("secret-of-the-caller");
    EXPECT_EQ(control, "ok read: secret-of-the-caller\n") << "control: a process of that session reads it";
    auto r = isopid::run_with_session_key("mcpwarden-bypass-key", "secret-of-the-caller",
                                          {"key-read @KEY", "key-search mcpwarden-bypass-key"});
    auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_EQ(r.out.find("secret-of-the-caller"), std::string::npos) << r.out;
    for (const auto& l : lines) EXPECT_EQ(l.rfind("errno ", 0), 0u) << l;
    outcome(join(lines) + ": the sandbox joins a new session keyring before the server starts");
}
