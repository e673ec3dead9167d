// SPDX-License-Identifier: Apache-2.0
// `mcpwarden oci-hook` with a real container runtime (issue 15): podman and runc (Debian's,
// scripts/setup.sh) run a busybox image made from this host's static busybox, the hook from a
// hooks.d file of the test's own, and the policy is held by an agent the test starts.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "agent_process.h"
#include "enforcer.h"
#include "fd.h"
#include "harness.h"
#include "net_fixtures.h"

using namespace harness;
using namespace netfix;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kImage = "localhost/mcpwarden-test-busybox:1";

bool have(const char* program) {
    return command({"sh", "-c", std::string("command -v ") + program}).exit_code == 0;
}

class OciHook : public KernelTest {
protected:
    static void SetUpTestSuite() {
        if (::geteuid() != 0 || !have("podman") || !have("runc") || !fs::exists("/bin/busybox")) return;
        // An image of one static busybox: no registry is reachable, and none is needed.
        std::string root = "/tmp/mcpwarden-oci-image";
        fs::remove_all(root);
        fs::create_directories(root + "/bin");
        fs::copy_file("/bin/busybox", root + "/bin/busybox");
        for (const char* applet : {"sh", "wget", "cat", "sleep", "echo"})
            fs::create_symlink("busybox", root + "/bin/" + applet);
        image_ready_ = command({"sh", "-c", "tar -C " + root + " -c . | podman import - " + kImage}).exit_code == 0;
        fs::remove_all(root);
    }
    static void TearDownTestSuite() {
        if (image_ready_) command({"podman", "rmi", "-f", kImage});
        image_ready_ = false;
    }

    void SetUp() override {
        KernelTest::SetUp();
        if (!have("podman") || !have("runc")) {
            if (in_ci()) FAIL() << "podman and runc are not installed: scripts/setup.sh installs them";
            GTEST_SKIP() << "needs podman and runc (apt-get install podman runc)";
        }
        ASSERT_TRUE(image_ready_) << "podman import of the busybox image failed";
        char tmpl[] = "/tmp/mcpwarden-oci-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        fs::create_directories(dir_ + "/policies");
        fs::create_directories(dir_ + "/hooks.d");
        socket_ = dir_ + "/agent.sock";
        // What deploy/oci-hooks.d/mcpwarden.json says, with this build's binary and agent.
        std::ofstream(dir_ + "/hooks.d/mcpwarden.json")
            << R"({"version": "1.0.0", "hook": {"path": ")" << MCPWARDEN_BIN
            << R"(", "args": ["mcpwarden", "oci-hook", "--agent", ")" << socket_
            << R"("], "timeout": 30}, "when": {"annotations": {"^io\\.mcpwarden\\.policy$": ".*"}},)"
            << R"( "stages": ["createRuntime", "poststop"]})";
        std::ofstream(dir_ + "/agent.yaml") << "socket: " << socket_ << "\npolicy_dir: " << dir_
                                            << "/policies\nstate_dir: " << state_dir() << "\naudit: " << dir_
                                            << "/audit.jsonl\n";
    }
    void TearDown() override {
        bool timed_out = false;
        agent_.stop(SIGTERM, &timed_out);
        EXPECT_FALSE(timed_out) << "the agent did not stop";
        std::error_code ec;
        fs::remove_all(dir_, ec);
        KernelTest::TearDown();
    }

    void policy(const std::string& name, const std::string& body) {
        std::ofstream(dir_ + "/policies/" + name + ".yaml") << "name: " << name << "\n" << body;
    }
    void start_agent() { ASSERT_TRUE(agent_.start(dir_ + "/agent.yaml", socket_, dir_ + "/agent.log")) << log(); }
    std::string log() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/agent.log", s);
        return s;
    }
    std::string audit() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/audit.jsonl", s);
        return s;
    }

    // podman run --rm IMAGE sh -c SCRIPT, with the test's hooks and these annotations.
    Result podman(const std::vector<std::string>& annotations, const std::string& script) {
        std::vector<std::string> argv{"podman", "--hooks-dir", dir_ + "/hooks.d", "run", "--rm", "--network", "host",
                                      // podman's default limits are above this machine's hard ones
                                      "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"};
        for (const auto& a : annotations) {
            argv.push_back("--annotation");
            argv.push_back(a);
        }
        argv.insert(argv.end(), {kImage, "sh", "-c", script});
        return command(argv);
    }

    // The agent's attachments (their records) and the attachment pins; both empty once the
    // container is gone (the agent notices a removed cgroup within a second).
    std::vector<std::string> attachments_left() {
        std::vector<std::string> left;
        std::error_code ec;
        for (int i = 0; i < 50; ++i) {
            left.clear();
            for (const auto& e : fs::directory_iterator(state_dir() + "/agent/attachments", ec))
                left.push_back(e.path().string());
            for (const auto& e : fs::directory_iterator(mcpwarden::sandbox_pin_root(), ec))
                if (e.path().filename().string().rfind("cg-", 0) == 0) left.push_back(e.path().string());
            if (left.empty()) break;
            std::this_thread::sleep_for(100ms);
        }
        return left;
    }

    static inline bool image_ready_ = false;
    std::string dir_, socket_;
    AgentProcess agent_;
};

std::string fetch(const std::string& address, const std::string& port) {
    return "wget -q -T 5 -O - http://" + address + ":" + port + "/ 2>&1; echo";
}

}  // namespace

TEST_F(OciHook, AnAnnotatedContainerIsConfinedFromItsFirstInstruction) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.3");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + allowed.port() + "]\n");
    start_agent();
    // The first instruction of the container is already the connection.
    auto r = podman({"io.mcpwarden.policy=probe"}, fetch("127.0.0.2", allowed.port()) + fetch("127.0.0.3", denied.port()));
    EXPECT_EQ(r.exit_code, 0) << r.err << log();
    EXPECT_EQ(r.out.substr(0, 3), "ok\n") << r.out << r.err;
    EXPECT_NE(r.out.find("Operation not permitted"), std::string::npos) << r.out << r.err;
    EXPECT_EQ(allowed.accepted(), 1);
    EXPECT_EQ(denied.accepted(), 0) << "the denied listener was reached";
    // The audit names the container (its cgroup, libpod-<id>) and the denied destination.
    std::string a = audit();
    EXPECT_NE(a.find("libpod-"), std::string::npos) << a;
    EXPECT_NE(a.find("127.0.0.3"), std::string::npos) << a;
    EXPECT_EQ(attachments_left(), std::vector<std::string>{}) << log();
}

TEST_F(OciHook, AuditOnlyLogsButAllows) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.3");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    start_agent();
    auto r = podman({"io.mcpwarden.policy=probe", "io.mcpwarden.audit-only=true"}, fetch("127.0.0.3", denied.port()));
    EXPECT_EQ(r.exit_code, 0) << r.err << log();
    EXPECT_EQ(r.out, "ok\n") << r.err;
    EXPECT_EQ(denied.accepted(), 1);
    EXPECT_NE(audit().find("127.0.0.3"), std::string::npos) << audit();
    EXPECT_EQ(attachments_left(), std::vector<std::string>{}) << log();
}

TEST_F(OciHook, WithoutTheAnnotationNothingIsEnforced) {
    TcpListener other("127.0.0.3");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    start_agent();
    auto r = podman({}, fetch("127.0.0.3", other.port()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "ok\n") << r.err;
    EXPECT_EQ(other.accepted(), 1);
    EXPECT_EQ(audit(), "");
}

TEST_F(OciHook, AnUnknownPolicyOrNoAgentKeepsTheContainerFromStarting) {
    TcpListener l("127.0.0.2");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    start_agent();
    auto r = podman({"io.mcpwarden.policy=no-such-policy"}, fetch("127.0.0.2", l.port()));
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.err.find("no-such-policy"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not started (fail closed)"), std::string::npos) << r.err;
    bool timed_out = false;
    agent_.stop(SIGTERM, &timed_out);
    r = podman({"io.mcpwarden.policy=probe"}, fetch("127.0.0.2", l.port()));
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.err.find("no mcpwarden agent answers"), std::string::npos) << r.err;
    EXPECT_EQ(l.accepted(), 0) << "a container ran although its policy could not be put on it";
}
