// SPDX-License-Identifier: Apache-2.0
// The DaemonSet's agent container (deploy/kubernetes/node.sh agent): the agent with its policy
// directory laid out as kubelet mounts a ConfigMap (each version of the files in a directory
// of its own, ..data pointing at the current one, each file a link through ..data), and a
// new version of the ConfigMap reaching a cgroup that is already attached.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "agent_client.h"
#include "enforcer.h"
#include "fd.h"
#include "harness.h"
#include "net_fixtures.h"
#include "test_cgroup.h"

using namespace harness;
using namespace netfix;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class KubernetesNode : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        char tmpl[] = "/tmp/mcpwarden-k8s-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        policies_ = dir_ + "/policies";
        socket_ = dir_ + "/agent.sock";
        fs::create_directories(policies_);
        fs::create_directories(dir_ + "/state");
        std::ofstream(dir_ + "/agent.yaml") << "socket: " << socket_ << "\npolicy_dir: " << policies_
                                            << "\nstate_dir: " << dir_ << "/state\naudit: " << dir_ << "/audit.jsonl\n";
    }
    void TearDown() override {
        if (pid_ > 0) {  // the test failed before node.sh ended: it, the agent and its sleep
            ::kill(-pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        std::error_code ec;
        fs::remove_all(dir_, ec);
        KernelTest::TearDown();
    }

    // A new version of the ConfigMap, swapped in as kubelet's atomic writer does: the files in
    // a new directory, then ..data renamed over to point at it, then the old version removed.
    void publish(const std::string& version, const std::string& name, const std::string& body) {
        std::string data = policies_ + "/.." + version;
        fs::create_directories(data);
        std::ofstream(data + "/" + name + ".yaml") << "name: " << name << "\n" << body;
        std::string old;
        std::error_code ec;
        if (fs::is_symlink(policies_ + "/..data")) old = fs::read_symlink(policies_ + "/..data").string();
        fs::create_symlink(".." + version, policies_ + "/..data_tmp");
        fs::rename(policies_ + "/..data_tmp", policies_ + "/..data");
        if (!fs::is_symlink(policies_ + "/" + name + ".yaml"))
            fs::create_symlink("..data/" + name + ".yaml", policies_ + "/" + name + ".yaml");
        if (!old.empty()) fs::remove_all(policies_ + "/" + old, ec);
    }

    // node.sh agent CONFIG POLICY_DIR, checking every 0.2 s.
    void start_node_agent() {
        std::string script = std::string(MCPWARDEN_SOURCE_DIR) + "/deploy/kubernetes/node.sh";
        std::string log = dir_ + "/node.log";
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setpgid(0, 0);
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::setenv("MCPWARDEN", MCPWARDEN_BIN, 1);
            ::setenv("MCPWARDEN_RELOAD_SECONDS", "0.2", 1);
            std::string config = dir_ + "/agent.yaml";
            ::execl("/bin/sh", "sh", script.c_str(), "agent", config.c_str(), policies_.c_str(), nullptr);
            ::_exit(127);
        }
        for (int i = 0; i < 1200 && !mcpwarden::AgentClient::connect(socket_); ++i) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // it ended: no use waiting
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(25ms);
        }
    }
    std::string log() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/node.log", s);
        return s;
    }
    nlohmann::json request(const nlohmann::json& body) {
        auto client = mcpwarden::AgentClient::connect(socket_);
        if (!client) return {{"error", "no agent"}};
        nlohmann::json r = body;
        r["v"] = 1;
        r["id"] = 1;
        client->send(r);
        try {
            return client->result(1);
        } catch (const std::exception& e) {
            return {{"error", e.what()}};
        }
    }

    std::string dir_, policies_, socket_;
    pid_t pid_ = -1;
};

}  // namespace

// A cgroup attached with a policy of the mounted ConfigMap is decided by its new version once
// kubelet has swapped it in (node.sh sends the agent SIGHUP); SIGTERM ends node.sh and the
// agent with status 0, and nothing of the attachment is left.
TEST_F(KubernetesNode, ANewConfigMapVersionReachesAnAttachedCgroup) {
    TcpListener first("127.0.0.2"), second("127.0.0.2");
    publish("2026_12_04_01", "probe",
            "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + first.port() + "]\n");
    start_node_agent();
    ASSERT_TRUE(mcpwarden::AgentClient::connect(socket_)) << log();
    TestCgroup cg;
    auto attached = request({{"op", "attach"}, {"cgroup", cg.path()}, {"policy", "probe"}});
    ASSERT_EQ(attached.value("cgroup_id", std::uint64_t{0}), cg.id()) << attached.dump() << log();
    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", second.port()), "EPERM");

    publish("2026_12_04_02", "probe",
            "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + second.port() + "]\n");
    std::string verdict;
    for (int i = 0; i < 100 && verdict != "ok"; ++i) {
        std::this_thread::sleep_for(100ms);
        verdict = cg.probe("127.0.0.2", second.port());
    }
    EXPECT_EQ(verdict, "ok") << "the new version did not reach the attachment within 10 s\n" << log();
    EXPECT_EQ(cg.probe("127.0.0.2", first.port()), "EPERM");
    EXPECT_NE(log().find("reloading the agent's policies"), std::string::npos) << log();
    EXPECT_EQ(first.accepted(), 1);

    auto detached = request({{"op", "detach"}, {"cgroup", cg.path()}});
    EXPECT_FALSE(detached.contains("error")) << detached.dump();
    ASSERT_EQ(::kill(pid_, SIGTERM), 0);
    int status = -1;
    for (int i = 0; i < 400 && ::waitpid(pid_, &status, WNOHANG) != pid_; ++i) std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << log();
    if (WIFEXITED(status) || WIFSIGNALED(status)) pid_ = -1;
    EXPECT_FALSE(mcpwarden::AgentClient::connect(socket_)) << "the agent still answers after node.sh ended";
    std::error_code ec;
    EXPECT_EQ(directory_entries(dir_ + "/state/agent/attachments"), 0);
    EXPECT_FALSE(fs::exists(mcpwarden::sandbox_pin_root() + "/cg-" + std::to_string(cg.id()), ec));
}
