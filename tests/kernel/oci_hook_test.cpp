// SPDX-License-Identifier: Apache-2.0
// `mcpwarden oci-hook` with a real container runtime (issue 15): podman and runc (Debian's,
// scripts/setup.sh) run a busybox image made from this host's static busybox, the hook from a
// hooks.d file of the test's own, and the policy is held by an agent the test starts.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
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
        for (const char* applet : {"sh", "wget", "cat", "sleep", "echo", "nslookup", "sed", "head", "tail"})
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
                                            << "/audit.jsonl\nmetrics: " << dir_ << "/metrics.sock\n";
    }
    void TearDown() override {
        for (const auto& id : detached_)  // containers of a failed test
            command({"podman", "rm", "-f", "-t", "0", id});
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
    // fetch_names' output: allowed.test fetched once, other.test refused by the resolver, and
    // each refusal audited under the container's short id.
    void expect_allowed_name_only(const std::string& output, const std::vector<std::string>& lines, int accepted) {
        ASSERT_GE(lines.size(), 2u) << output;
        EXPECT_EQ(lines[0], "ok") << log();
        EXPECT_NE(lines[1].find("bad address"), std::string::npos) << lines[1];
        EXPECT_EQ(accepted, 1);
        auto denied = refused("other.test");  // a query of each type, once or twice over
        ASSERT_FALSE(denied.empty()) << audit();
        for (const auto& e : denied) EXPECT_EQ(e.value("sandbox", ""), container_id().substr(0, 12)) << audit();
    }
    std::string audit() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/audit.jsonl", s);
        return s;
    }

    // podman run --rm IMAGE sh -c SCRIPT, with the test's hooks and these annotations, on the
    // host's network or `network` (ns:/run/netns/NAME: a namespace of the test's own). Its
    // resolv.conf names a loopback resolver nobody serves: only the redirection answers.
    // `detach`: podman run -d (the container's id is in the answer; the test removes it).
    Result podman(const std::vector<std::string>& annotations, const std::string& script,
                  const std::string& network = "host", bool detach = false) {
        std::vector<std::string> argv{"podman", "--hooks-dir", dir_ + "/hooks.d", "run", "--rm", "--network", network,
                                      "--dns", "127.0.0.53", "--cidfile", dir_ + "/cid",
                                      // podman's default limits are above this machine's hard ones
                                      "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"};
        if (detach) argv.push_back("-d");
        for (const auto& a : annotations) {
            argv.push_back("--annotation");
            argv.push_back(a);
        }
        argv.insert(argv.end(), {kImage, "sh", "-c", script});
        ::unlink((dir_ + "/cid").c_str());
        auto r = command(argv);
        if (detach && r.exit_code == 0) detached_.push_back(container_id());
        return r;
    }
    // The id of the last container podman ran (its --cidfile).
    std::string container_id() const {
        std::string id;
        mcpwarden::read_file(dir_ + "/cid", id);
        while (!id.empty() && std::isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
        return id;
    }
    std::string metrics() const { return scrape_metrics(dir_ + "/metrics.sock"); }
    nlohmann::json ps() {
        auto r = warden({"ps", "--agent", socket_, "--json"});
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
    }
    // The dns_refused lines of the audit for `name`.
    std::vector<nlohmann::json> refused(const std::string& name) const {
        std::vector<nlohmann::json> out;
        for (const auto& e : read_audit(dir_ + "/audit.jsonl"))
            if (e.value("event", "") == "dns_refused" && e.value("name", "") == name) out.push_back(e);
        return out;
    }
    // The agent's socket descriptors (its resolvers' among them).
    int agent_sockets() const {
        int n = 0;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(agent_.pid()) + "/fd", ec))
            if (fs::read_symlink(e.path(), ec).string().rfind("socket:", 0) == 0) ++n;
        return n;
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
    std::vector<std::string> detached_;
    AgentProcess agent_;
};

std::string fetch(const std::string& address, const std::string& port) {
    // (no -T: Debian's static busybox wget crashes with a timeout outside a full root)
    return "wget -q -O - http://" + address + ":" + port + "/ 2>&1; echo; ";
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
    // The denial is audited, named by the container's short id (the attachment's name), and
    // the agent's log names the cgroup, which holds the container's id.
    std::string id = container_id();
    ASSERT_EQ(id.size(), 64u) << id;
    bool named = false;
    for (const auto& e : read_audit(dir_ + "/audit.jsonl"))
        if (e.value("address", "") == "127.0.0.3") named = e.value("sandbox", "") == id.substr(0, 12);
    EXPECT_TRUE(named) << audit();
    EXPECT_NE(log().find("/libpod_parent/libpod-"), std::string::npos) << log();
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

namespace {

// Host rules in the container: the name the policy allows resolves (the upstream is a test DNS
// server on the host's loopback) and connects, another is refused; busybox's own wget, static.
std::string names_policy(const std::string& port) {
    return "egress:\n  allow:\n    - host: allowed.test\n      ports: [" + port +
           "]\ndns:\n  upstream: [\"127.0.0.153:5353\"]\n  allow_reserved_answers: true\n";
}
std::string fetch_names(const std::string& port) {
    return "wget -q -O - http://allowed.test:" + port + "/ 2>&1; echo; wget -q -O - http://other.test:" + port +
           "/ 2>&1; echo";
}
const std::vector<std::string> kUpstream{"allowed.test=127.0.0.2", "other.test=127.0.0.3"};

}  // namespace

// A container on the host's network: the resolver is the agent's, on the host's loopback.
TEST_F(OciHook, HostRulesWorkWithTheHostsNetwork) {
    TcpListener http("127.0.0.2");
    DnsStub upstream("127.0.0.153", 5353, 60, kUpstream);
    policy("names", names_policy(http.port()));
    start_agent();
    int sockets = agent_sockets();
    auto r = podman({"io.mcpwarden.policy=names"}, fetch_names(http.port()));
    EXPECT_EQ(r.exit_code, 0) << r.err << log();
    expect_allowed_name_only(r.out + r.err, split_lines(r.out), http.accepted());
    EXPECT_EQ(attachments_left(), std::vector<std::string>{}) << log();
    EXPECT_EQ(agent_sockets(), sockets) << "a resolver socket of the container is left in the agent";
}

// A container on a network of its own (a namespace the test made, with its loopback only):
// the agent makes the container's resolver inside that namespace, where the kernel redirects
// its port-53 flows, and host rules work as on the host's network; allowed.test's server
// listens inside that namespace only.
TEST_F(OciHook, HostRulesWorkInTheContainersOwnNetwork) {
    NetNs ns("mwocins");
    std::unique_ptr<TcpListener> http;
    ns.inside([&] { http = std::make_unique<TcpListener>("127.0.0.2"); });
    ASSERT_TRUE(http);
    DnsStub upstream("127.0.0.153", 5353, 60, kUpstream);
    policy("names", names_policy(http->port()));
    start_agent();
    int sockets = agent_sockets();
    auto r = podman({"io.mcpwarden.policy=names"}, fetch_names(http->port()), "ns:" + ns.path());
    EXPECT_EQ(r.exit_code, 0) << r.err << log();
    expect_allowed_name_only(r.out + r.err, split_lines(r.out), http->accepted());
    EXPECT_NE(log().find("resolver in net:[" + std::to_string(ns.inode()) + "]"), std::string::npos) << log();
    EXPECT_EQ(attachments_left(), std::vector<std::string>{}) << log();
    EXPECT_EQ(ns.udp_loopback_ports(), std::vector<int>{}) << "the container's resolver is left in its namespace";
    EXPECT_EQ(agent_sockets(), sockets) << "a resolver socket of the container is left in the agent";
}

// A running container on its own network: ps and the metrics name its attachment by the
// container's short id; the agent killed and started again adopts it under the same name,
// with its resolver back in the container's namespace (a process podman exec starts there
// resolves and is refused as before); removing the container leaves nothing behind.
TEST_F(OciHook, AnAgentRestartKeepsTheContainersNameAndEnforcement) {
    NetNs ns("mwocirs");
    std::unique_ptr<TcpListener> http;
    ns.inside([&] { http = std::make_unique<TcpListener>("127.0.0.2"); });
    ASSERT_TRUE(http);
    DnsStub upstream("127.0.0.153", 5353, 60, kUpstream);
    policy("names", names_policy(http->port()));
    start_agent();
    auto r = podman({"io.mcpwarden.policy=names"}, "sleep 120", "ns:" + ns.path(), true);
    ASSERT_EQ(r.exit_code, 0) << r.err << log();
    std::string id = container_id(), name = id.substr(0, 12);
    ASSERT_EQ(id.size(), 64u) << id;

    std::size_t refusals = 0;  // dns_refused lines so far
    auto check = [&](const char* when) {
        SCOPED_TRACE(when);
        auto list = ps()["attachments"];
        ASSERT_EQ(list.size(), 1u) << list.dump();
        EXPECT_EQ(list[0].value("name", ""), name);
        EXPECT_EQ(list[0].value("container", ""), id);
        EXPECT_EQ(list[0].value("netns", 0ull), ns.inode());
        auto text = warden({"ps", "--agent", socket_});
        EXPECT_NE(text.out.find(name + " "), std::string::npos) << text.out;
        EXPECT_NE(text.out.find("attached"), std::string::npos) << text.out;
        auto ports = ns.udp_loopback_ports();
        EXPECT_EQ(ports, std::vector<int>{list[0].value("dns_port", 0)}) << "the resolver is not in the container's namespace";
        auto e = command({"podman", "exec", id, "sh", "-c", fetch_names(http->port())});
        auto lines = split_lines(e.out);
        ASSERT_GE(lines.size(), 2u) << e.out << e.err;
        EXPECT_EQ(lines[0], "ok") << log();
        EXPECT_NE(lines[1].find("bad address"), std::string::npos) << lines[1];
        auto denied = refused("other.test");
        ASSERT_GT(denied.size(), refusals) << audit();
        for (std::size_t i = refusals; i < denied.size(); ++i) EXPECT_EQ(denied[i].value("sandbox", ""), name);
        std::string m = metrics();
        EXPECT_NE(m.find("mcpwarden_attachments{attachment=\"" + name + "\",policy=\"names\",container=\"" + id + "\"} 1"),
                  std::string::npos)
            << m;
        // This agent's count: the lines since it started.
        EXPECT_NE(m.find("mcpwarden_attachment_denials_total{attachment=\"" + name + "\",reason=\"dns_refused\"} " +
                         std::to_string(denied.size() - refusals)),
                  std::string::npos)
            << m;
    };
    check("before the restart");
    refusals = refused("other.test").size();
    agent_.stop(SIGKILL);
    start_agent();
    EXPECT_NE(log().find("adopted the attachment " + name), std::string::npos) << log();
    check("after the restart");
    for (int i = 0; i < 100 && http->accepted() < 2; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(http->accepted(), 2);

    EXPECT_EQ(command({"podman", "rm", "-f", "-t", "0", id}).exit_code, 0);
    detached_.clear();
    EXPECT_EQ(attachments_left(), std::vector<std::string>{}) << log();
    EXPECT_EQ(ns.udp_loopback_ports(), std::vector<int>{}) << "the container's resolver is left in its namespace";
    EXPECT_EQ(ps()["attachments"].size(), 0u);
}
