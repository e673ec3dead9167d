// SPDX-License-Identifier: Apache-2.0
// The agent's live policy updates and crash safety, against the real mcpwarden agent, real
// cgroups, the real BPF programs and loopback sockets. A sandbox's stdio are pipes of the test
// (stdio "pass"), so the test drives its next connections and they outlive an agent crash.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "agent_client.h"
#include "agent_process.h"
#include "enforcer.h"
#include "fd.h"
#include "harness.h"
#include "net_fixtures.h"
#include "test_cgroup.h"

using namespace harness;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

class AgentDurability : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        char tmpl[] = "/tmp/mcpwarden-durable-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        ::chmod(dir_.c_str(), 0755);
        fs::create_directories(dir_ + "/policies");
        socket_ = dir_ + "/agent.sock";
    }
    void TearDown() override {
        stop_agent();
        std::error_code ec;
        fs::remove_all(dir_, ec);
        KernelTest::TearDown();
    }

    void policy(const std::string& body) { std::ofstream(dir_ + "/policies/probe.yaml") << "name: probe\n" << body; }
    std::string allow_port(const netfix::TcpListener& l) {
        return "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + l.port() + "]\n";
    }

    // `more`: further lines of the configuration.
    void start_agent(const std::string& on_restart = "adopt", const std::string& more = "") {
        std::string config = dir_ + "/agent.yaml";
        std::ofstream(config) << "socket: " << socket_ << "\npolicy_dir: " << dir_ << "/policies\nstate_dir: "
                              << state_dir() << "\non_restart: " << on_restart << "\n" << more;
        if (!agent_.start(config, socket_, dir_ + "/agent.log"))
            ADD_FAILURE() << "the agent did not start listening: " << log();
    }
    void stop_agent(int sig = SIGTERM) {
        bool timed_out = false;
        agent_.stop(sig, &timed_out);
        EXPECT_FALSE(timed_out) << "the agent did not stop\n" << log();
    }
    std::string log() const {
        std::string s;
        mcpwarden::read_file(dir_ + "/agent.log", s);
        return s;
    }
    mcpwarden::AgentClient client() {
        auto c = mcpwarden::AgentClient::connect(socket_);
        if (!c) throw std::runtime_error("no agent");
        return std::move(*c);
    }
    json request(const json& r) {
        auto c = client();
        c.send(r);
        for (;;) {
            auto m = c.receive(nullptr, 10000);
            if (!m) return nullptr;
            if ((*m)["id"] == r["id"] && !m->contains("event")) return *m;
        }
    }
    json list() { return request({{"v", 1}, {"id", 90}, {"op", "list"}}); }
    // Waits until the agent no longer lists `name`: it lists a sandbox until it removed all of
    // it (cgroups, pins, workspace, then the record). The cgroup alone being gone says less:
    // the workspace and the record go after it.
    bool wait_unlisted(const std::string& name) {
        for (int i = 0; i < 600; ++i) {
            bool listed = false;
            json l = list();
            for (const auto& e : l["result"]["sandboxes"]) listed = listed || e["sandbox"] == name;
            if (l.value("ok", false) && !listed) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    }

    // A sandbox of an agent killed with SIGKILL stays enforced, and the agent restarted with
    // `on_restart` removes all of it. `drop_record`: its record is deleted first, as if the
    // agent had died before writing it.
    void crash_then_restart_removes(const std::string& on_restart, bool drop_record);

    std::string dir_, socket_;
    AgentProcess agent_;
};

// A sandbox of the agent whose shell runs `netprobe LINE` for each line it reads: every probe
// is a new connection (or name lookup) of the running sandbox.
class ProbeSandbox {
public:
    // `prelude`: shell commands before the loop.
    explicit ProbeSandbox(mcpwarden::AgentClient& c, const std::string& prelude = "") : c_(c) {
        int in[2], out[2];
        EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
        std::string script = prelude + "while read c; do " + program("netprobe") + " $c; done";
        json r = {{"v", 1}, {"id", 1}, {"op", "create"}, {"policy", "probe"}, {"keep", true},
                  {"command", {"sh", "-c", script}}, {"stdio", "pass"}};
        int fds[3] = {in[0], out[1], out[1]};
        c_.send(r, fds);
        ::close(in[0]);
        ::close(out[1]);
        to_ = in[1];
        from_ = out[0];
        for (int i = 0; i < 100; ++i) {
            auto m = c_.receive(nullptr, 200);
            if (m && m->value("event", "") == "started") {
                name = (*m)["sandbox"];
                pid = (*m)["pid"];
                return;
            }
            if (m && m->contains("ok")) {
                ADD_FAILURE() << m->dump();
                return;
            }
        }
    }
    ~ProbeSandbox() {
        ::close(to_);
        ::close(from_);
    }
    std::string probe(const std::string& port) { return run("tcp4 127.0.0.2 " + port); }
    std::string run(const std::string& args, int timeout_ms = 10000) {
        return ask_line(to_, from_, args, timeout_ms);
    }
    void close_stdin() {
        ::close(to_);
        to_ = -1;
    }
    std::string name;
    pid_t pid = 0;

private:
    mcpwarden::AgentClient& c_;
    int to_ = -1, from_ = -1;
};

bool process_alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0 && fs::exists("/proc/" + std::to_string(pid)); }

// Nothing of a sandbox is left: cgroups, processes, pins, rule entries, workspace, record.
void expect_gone(const std::string& name, std::uint64_t id, pid_t pid, const std::string& records) {
    // The main process may be reaped by whoever inherited it from the killed agent (init):
    // headroom for the slow VM.
    for (int i = 0; i < 1000 && process_alive(pid); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(process_alive(pid)) << name;
    for (const auto& c : leftover_cgroups()) EXPECT_EQ(c.find(name), std::string::npos) << c;
    EXPECT_FALSE(fs::exists(mcpwarden::sandbox_pin_root() + "/" + name));
    EXPECT_EQ(mcpwarden::count_policy_entries(id), 0u);
    EXPECT_FALSE(fs::exists(state_dir() + "/run/" + name));
    EXPECT_FALSE(fs::exists(records + "/" + name + ".json"));
}

std::uint64_t cgroup_id(const std::string& name) {
    for (const auto& c : leftover_cgroups()) {
        struct stat st {};
        if (c.find(name) != std::string::npos && c.find("/unified/") != std::string::npos && ::stat(c.c_str(), &st) == 0)
            return st.st_ino;
    }
    for (const auto& c : leftover_cgroups()) {
        struct stat st {};
        if (c.find(name) != std::string::npos && ::stat(c.c_str(), &st) == 0 && fs::exists(c + "/cgroup.kill"))
            return st.st_ino;
    }
    return 0;
}

}  // namespace

// Reload (the API op and SIGHUP) changes the verdict for the next connection of a running
// sandbox, both ways; a broken edit changes nothing.
TEST_F(AgentDurability, ReloadChangesTheNextConnectionOfARunningSandbox) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    policy(allow_port(a));
    start_agent();
    auto c = client();
    ProbeSandbox s(c);
    ASSERT_FALSE(s.name.empty()) << log();
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");

    policy(allow_port(b));
    auto r = request({{"v", 1}, {"id", 2}, {"op", "reload"}, {"policy", "probe"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_EQ(r["result"]["reloaded"].size(), 1u) << r.dump();
    EXPECT_EQ(s.probe(a.port()), "EPERM");
    EXPECT_EQ(s.probe(b.port()), "ok");

    policy(allow_port(a));
    auto reloaded = [&] {  // how many reloads the agent has logged so far
        std::string l = log();
        int n = 0;
        for (auto at = l.find("reloaded 1 sandbox"); at != std::string::npos; at = l.find("reloaded 1 sandbox", at + 1)) ++n;
        return n;
    };
    int before = reloaded();
    ::kill(agent_.pid(), SIGHUP);
    for (int i = 0; i < 500 && reloaded() == before; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(s.probe(a.port()), "ok") << log();
    EXPECT_EQ(s.probe(b.port()), "EPERM");

    policy("egress: [[\n");
    r = request({{"v", 1}, {"id", 3}, {"op", "reload"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_EQ(r["result"]["failed"].size(), 1u) << r.dump();
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    auto bad = request({{"v", 1}, {"id", 4}, {"op", "reload"}, {"policy", "nosuch"}});
    EXPECT_FALSE(bad.value("ok", true)) << bad.dump();

    s.close_stdin();
    EXPECT_EQ(a.accepted(), 3);  // exactly the probes that said ok
    EXPECT_EQ(b.accepted(), 1);
}

// SIGKILL the agent: the sandbox keeps running under its exact policy; a standalone run's
// sweep leaves it alone; a restarted agent (on_restart: adopt) lists it, enforces it, reloads
// it and kills it, and then nothing of it is left.
TEST_F(AgentDurability, SigkillKeepsEnforcementAndARestartedAgentAdopts) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    policy(allow_port(a));
    start_agent("adopt");
    std::string name;
    pid_t pid = 0;
    std::uint64_t id = 0;
    auto c = client();
    ProbeSandbox s(c);
    ASSERT_FALSE(s.name.empty()) << log();
    name = s.name;
    pid = s.pid;
    id = cgroup_id(name);
    ASSERT_NE(id, 0u);
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");

    stop_agent(SIGKILL);
    EXPECT_TRUE(process_alive(pid));
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    auto run = warden({"run", "--", "true"});  // sweeps what has no owner: not the agent's
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    EXPECT_TRUE(process_alive(pid));

    start_agent("adopt");
    auto l = list();
    ASSERT_TRUE(l.value("ok", false)) << l.dump();
    bool listed = false;
    for (const auto& e : l["result"]["sandboxes"]) listed = listed || e["sandbox"] == name;
    EXPECT_TRUE(listed) << l.dump() << log();
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    policy(allow_port(b));
    auto r = request({{"v", 1}, {"id", 5}, {"op", "reload"}});
    EXPECT_EQ(r["result"]["reloaded"].size(), 1u) << r.dump();
    EXPECT_EQ(s.probe(a.port()), "EPERM");
    EXPECT_EQ(s.probe(b.port()), "ok");

    auto k = request({{"v", 1}, {"id", 6}, {"op", "kill"}, {"sandbox", name}});
    EXPECT_TRUE(k.value("ok", false)) << k.dump();
    EXPECT_TRUE(wait_unlisted(name)) << log();
    expect_gone(name, id, pid, state_dir() + "/agent/sandboxes");
    l = list();
    EXPECT_TRUE(l["result"]["sandboxes"].empty()) << l.dump();
}

// on_restart: kill — the restarted agent ends what the crashed one left and removes it all.
void AgentDurability::crash_then_restart_removes(const std::string& on_restart, bool drop_record) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    policy(allow_port(a));
    start_agent(on_restart);
    auto c = client();
    ProbeSandbox s(c);
    ASSERT_FALSE(s.name.empty()) << log();
    std::uint64_t id = cgroup_id(s.name);
    ASSERT_NE(id, 0u);
    stop_agent(SIGKILL);
    std::string records = state_dir() + "/agent/sandboxes";
    if (drop_record) {
        ASSERT_TRUE(fs::remove(records + "/" + s.name + ".json")) << "no record to remove";
    }
    EXPECT_EQ(s.probe(b.port()), "EPERM");  // still enforced while nobody owns it
    start_agent(on_restart);
    expect_gone(s.name, id, s.pid, records);
    if (drop_record) {
        EXPECT_NE(log().find("had no record"), std::string::npos) << log();
    }
    auto l = list();
    EXPECT_TRUE(l["result"]["sandboxes"].empty()) << l.dump();
}

TEST_F(AgentDurability, SigkillThenARestartedAgentKillsAndCleansUp) { crash_then_restart_removes("kill", false); }

// An agent killed after making a sandbox but before writing its record: the restarted agent
// cannot adopt what it has no record of, and removes it (process, cgroups, pins, entries).
TEST_F(AgentDurability, ARestartedAgentRemovesSandboxesWithoutARecord) { crash_then_restart_removes("adopt", true); }

// attach/detach through the agent's API on a cgroup the test made, with a process inside from
// before: enforced after attach, still enforced after the agent is SIGKILLed, adopted by the
// restarted agent (reload reaches it), and after detach the cgroup is as before: nothing of
// ours in bpffs or the maps.
TEST_F(AgentDurability, AttachThroughTheAgentSurvivesACrashAndDetachRestores) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    policy(allow_port(a));
    TestCgroup cg;
    ASSERT_EQ(cg.probe("127.0.0.2", b.port()), "ok");
    start_agent("adopt");
    auto r = request({{"v", 1}, {"id", 10}, {"op", "attach"}, {"cgroup", cg.path()}, {"policy", "probe"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump() << log();
    EXPECT_EQ(r["result"]["cgroup_id"], cg.id());
    EXPECT_EQ(cg.probe("127.0.0.2", a.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "EPERM");
    auto twice = request({{"v", 1}, {"id", 11}, {"op", "attach"}, {"cgroup", cg.path()}, {"policy", "probe"}});
    EXPECT_FALSE(twice.value("ok", true)) << twice.dump();

    stop_agent(SIGKILL);
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "EPERM");
    start_agent("adopt");
    EXPECT_NE(log().find("adopted the attachment"), std::string::npos) << log();
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "EPERM");
    policy(allow_port(b));
    r = request({{"v", 1}, {"id", 12}, {"op", "reload"}});
    EXPECT_EQ(r["result"]["reloaded"].size(), 1u) << r.dump();
    EXPECT_EQ(cg.probe("127.0.0.2", a.port()), "EPERM");
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "ok");

    r = request({{"v", 1}, {"id", 13}, {"op", "detach"}, {"cgroup", cg.path()}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_EQ(cg.probe("127.0.0.2", a.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "ok");
    EXPECT_FALSE(fs::exists(mcpwarden::sandbox_pin_root() + "/cg-" + std::to_string(cg.id())));
    EXPECT_EQ(mcpwarden::count_policy_entries(cg.id()), 0u);
    EXPECT_FALSE(fs::exists(state_dir() + "/agent/attachments/" + std::to_string(cg.id()) + ".json"));
    r = request({{"v", 1}, {"id", 14}, {"op", "detach"}, {"cgroup", cg.path()}});
    EXPECT_FALSE(r.value("ok", true)) << r.dump();
}

// An adopted sandbox resolves names again through a resolver on the same address, and the
// addresses it learned before the crash still open what its host rule allows.
TEST_F(AgentDurability, AdoptedSandboxKeepsResolvingNames) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    netfix::DnsStub upstream("127.0.0.157", 5353, 60, {"api.durable.test=127.0.0.2"});
    policy("egress:\n  allow:\n    - host: api.durable.test\n      ports: [" + a.port() +
           "]\ndns:\n  upstream: [\"127.0.0.157:5353\"]\n  allow_reserved_answers: true\n");
    start_agent("adopt");
    auto c = client();
    ProbeSandbox s(c);
    ASSERT_FALSE(s.name.empty()) << log();
    EXPECT_EQ(s.probe(a.port()), "EPERM");  // not resolved yet
    EXPECT_EQ(s.run("resolve api.durable.test"), "127.0.0.2");
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    stop_agent(SIGKILL);
    EXPECT_EQ(s.probe(a.port()), "ok");  // the learned address stays in the kernel's maps
    start_agent("adopt");
    EXPECT_EQ(log().find("was taken"), std::string::npos) << log();
    EXPECT_EQ(s.run("resolve api.durable.test"), "127.0.0.2") << log();
    EXPECT_EQ(s.run("resolve other.durable.test").find("127.0.0"), std::string::npos);  // refused
    EXPECT_EQ(s.probe(a.port()), "ok");
    EXPECT_EQ(s.probe(b.port()), "EPERM");
    s.close_stdin();
}

// The CLI's attach/detach with --agent: the agent holds the attachment, attach returns at once.
TEST_F(AgentDurability, CliAttachAndDetachThroughTheAgent) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    policy(allow_port(a));
    TestCgroup cg;
    start_agent("adopt");
    auto r = warden({"attach", "--agent", socket_, "--cgroup", cg.path(), "--policy", "probe"});
    ASSERT_EQ(r.exit_code, 0) << r.err << log();
    EXPECT_EQ(json::parse(r.out)["cgroup_id"], cg.id());
    EXPECT_EQ(cg.probe("127.0.0.2", a.port()), "ok");
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "EPERM");
    auto bad = warden({"attach", "--agent", socket_, "--cgroup", cg.path(), "--policy", "probe", "--audit", "/tmp/x"});
    EXPECT_EQ(bad.exit_code, 64) << bad.err;
    r = warden({"detach", "--agent", socket_, "--cgroup", cg.path()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(cg.probe("127.0.0.2", b.port()), "ok");
    EXPECT_FALSE(fs::exists(mcpwarden::sandbox_pin_root() + "/cg-" + std::to_string(cg.id())));
    r = warden({"detach", "--agent", socket_, "--cgroup", cg.path()});
    EXPECT_EQ(r.exit_code, 64) << r.err;
}

// While reloads flip between two policies that both allow 127.0.0.2:P through different map
// entries (other prefixes, port bitmaps under the same compiled set ids), not one of 1,000
// connections to it is denied; a port only one of them allows ends as the last one says.
TEST_F(AgentDurability, ReloadNeverDeniesWhatBothPoliciesAllow) {
    netfix::TcpListener a("127.0.0.2"), b("127.0.0.2");
    int p = std::stoi(a.port());
    auto ports = [&](int base) {  // nine single ports (a bitmap, not inline ranges) with P among them
        std::string out = std::to_string(p);
        for (int i = 1; i <= 8; ++i) out += ", " + std::to_string(base + 2 * i);
        return out;
    };
    std::string v1 = "egress:\n  allow:\n    - cidr: 127.0.0.0/24\n      ports: [" + ports(20000) + "]\n";
    std::string v2 = "egress:\n  allow:\n    - cidr: 127.0.0.0/16\n      ports: [" + b.port() +
                     "]\n    - cidr: 127.0.0.2/32\n      ports: [" + ports(30001) +
                     "]\n  deny:\n    - cidr: 127.0.0.0/28\n      ports: [" + b.port() + "]\n";
    policy(v1);
    start_agent();
    auto c = client();
    ProbeSandbox s(c);
    ASSERT_FALSE(s.name.empty()) << log();
    std::atomic<bool> done{false};
    std::atomic<int> reloads{0}, failed{0};
    std::thread flipper([&] {
        for (int i = 0; !done; ++i) {
            policy(i % 2 ? v1 : v2);
            auto r = request({{"v", 1}, {"id", 100 + i}, {"op", "reload"}});
            if (r.is_null() || r["result"]["reloaded"].size() != 1) ++failed;
            ++reloads;
        }
    });
    // Rounds of 1,000 connections until at least 20 reloads happened under them (a slow build,
    // such as the sanitizer one, connects fewer times per reload).
    std::string result;
    for (int round = 0; round < 20 && reloads.load() < 20; ++round) {
        result = s.run("connect-loop 127.0.0.2 " + a.port() + " 1000", 60000);
        if (result.empty() || result.find_first_not_of("0123456789") != std::string::npos) break;
    }
    done = true;
    flipper.join();
    EXPECT_TRUE(!result.empty() && result.find_first_not_of("0123456789") == std::string::npos)
        << "a connection failed: " << result;
    EXPECT_GE(reloads.load(), 20);
    EXPECT_EQ(failed.load(), 0);
    policy(v2);
    request({{"v", 1}, {"id", 99}, {"op", "reload"}});
    EXPECT_EQ(s.probe(b.port()), "EPERM");  // denied by v2's deny rule
    policy(v1);
    request({{"v", 1}, {"id", 98}, {"op", "reload"}});
    EXPECT_EQ(s.probe(b.port()), "EPERM");  // v1 does not allow it
    EXPECT_EQ(s.probe(a.port()), "ok");
}

// Adopted sandboxes run already: they hold their slots even above a lower cap of the restarted
// agent, and are never queued (nor expired from the queue).
TEST_F(AgentDurability, AdoptedSandboxesHoldSlotsAboveTheCap) {
    netfix::TcpListener a("127.0.0.2");
    policy(allow_port(a));
    start_agent("adopt");
    auto c1 = client();
    auto c2 = client();
    ProbeSandbox s1(c1), s2(c2);
    ASSERT_FALSE(s1.name.empty() || s2.name.empty()) << log();
    stop_agent(SIGKILL);
    start_agent("adopt", "limits: { max_sandboxes: 1, queue_timeout: 1s }\n");
    auto l = list();
    EXPECT_EQ(l["result"]["running"], 2) << l.dump() << log();
    EXPECT_EQ(l["result"]["queued"], 0) << l.dump();
    std::this_thread::sleep_for(1500ms);  // past the queue timeout
    l = list();
    EXPECT_EQ(l["result"]["sandboxes"].size(), 2u) << l.dump();
    EXPECT_EQ(l["result"]["running"], 2) << l.dump();
    EXPECT_EQ(s1.probe(a.port()), "ok");
    EXPECT_EQ(s2.probe(a.port()), "ok");
    s1.close_stdin();
    s2.close_stdin();
    for (int i = 0; i < 500 && list()["result"]["running"] != 0; ++i) std::this_thread::sleep_for(10ms);
    l = list();
    EXPECT_EQ(l["result"]["running"], 0) << l.dump();
    EXPECT_TRUE(l["result"]["sandboxes"].empty()) << l.dump();
}

// kill of an adopted sandbox ends every process of it (cgroup.kill), as for a hosted one: a
// server that ignores SIGTERM does not survive it.
TEST_F(AgentDurability, KillEndsAnAdoptedSandboxThatIgnoresSigterm) {
    netfix::TcpListener a("127.0.0.2");
    policy(allow_port(a));
    start_agent("adopt");
    auto c = client();
    ProbeSandbox s(c, "trap '' TERM; ");
    ASSERT_FALSE(s.name.empty()) << log();
    std::uint64_t id = cgroup_id(s.name);
    EXPECT_EQ(s.probe(a.port()), "ok");
    stop_agent(SIGKILL);
    start_agent("adopt");
    auto k = request({{"v", 1}, {"id", 6}, {"op", "kill"}, {"sandbox", s.name}});  // signal 15
    EXPECT_TRUE(k.value("ok", false)) << k.dump();
    EXPECT_TRUE(wait_unlisted(s.name)) << log();
    expect_gone(s.name, id, s.pid, state_dir() + "/agent/sandboxes");
}
