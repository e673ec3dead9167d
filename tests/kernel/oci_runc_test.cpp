// SPDX-License-Identifier: Apache-2.0
// `mcpwarden oci-hook` under runc alone (issue 15): the test writes the OCI bundle itself (a
// root filesystem of the static busybox, config.json with the hook at createRuntime and
// poststop, the policy annotation, a cgroupsPath of its own) and runs it with `runc run`,
// against an agent it starts. No podman, no image store: this runs in the VM stage's guest
// (Linux 6.1, pure cgroup v2) as well as on this hybrid host.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "agent_process.h"
#include "cgroup.h"
#include "enforcer.h"
#include "fd.h"
#include "harness.h"
#include "net_fixtures.h"

using namespace harness;
using namespace netfix;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

std::string runc_path() {
    for (const char* p : {"/usr/sbin/runc", "/usr/bin/runc"})
        if (::access(p, X_OK) == 0) return p;
    return "";
}

class OciRunc : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        runc_ = runc_path();
        if (runc_.empty() || !fs::exists("/bin/busybox")) {
            if (in_ci())
                FAIL() << "runc and /bin/busybox are needed: scripts/setup.sh installs runc and busybox-static";
            GTEST_SKIP() << "needs runc and a static /bin/busybox (apt-get install runc busybox-static)";
        }
        char tmpl[] = "/tmp/mcpwarden-runc-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        socket_ = dir_ + "/agent.sock";
        for (const char* d :
             {"policies", "state", "runc", "bundle/rootfs/bin", "bundle/rootfs/proc", "bundle/rootfs/dev"})
            fs::create_directories(dir_ + "/" + d);
        fs::copy_file("/bin/busybox", dir_ + "/bundle/rootfs/bin/busybox");
        for (const char* applet : {"sh", "wget", "echo"})
            fs::create_symlink("busybox", dir_ + "/bundle/rootfs/bin/" + applet);
        std::ofstream(dir_ + "/agent.yaml")
            << "socket: " << socket_ << "\npolicy_dir: " << dir_ << "/policies\nstate_dir: " << dir_
            << "/state\naudit: " << dir_ << "/audit.jsonl\n";
        cgroups_path_ = "/mcpwarden-runc-test-" + std::to_string(::getpid());
        id_ = "mcpwarden-runc-test-" + std::to_string(::getpid());
    }
    void TearDown() override {
        if (!runc_.empty() && !dir_.empty()) command({runc_, "--root", dir_ + "/runc", "delete", "--force", id_});
        bool timed_out = false;
        agent_.stop(SIGTERM, &timed_out);
        EXPECT_FALSE(timed_out) << "the agent did not stop";
        std::error_code ec;
        if (!dir_.empty()) fs::remove_all(dir_, ec);
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

    // The bundle's config.json: `sh -c SCRIPT` in the container, the hook at createRuntime and
    // poststop, these annotations; the host's network namespace (its loopback listeners).
    void write_bundle(const json& annotations, const std::string& script) {
        auto hook = [&](const char* stage) {
            return json::array({{{"path", MCPWARDEN_BIN},
                                 {"args", {"mcpwarden", "oci-hook", "--agent", socket_, stage}},
                                 {"timeout", 60}}});
        };
        json config = {
            {"ociVersion", "1.0.2"},
            {"process",
             {{"terminal", false},
              {"user", {{"uid", 0}, {"gid", 0}}},
              {"args", {"sh", "-c", script}},
              {"env", {"PATH=/bin"}},
              {"cwd", "/"},
              {"noNewPrivileges", true}}},
            {"root", {{"path", "rootfs"}, {"readonly", true}}},
            {"hostname", "mcpwarden-runc"},
            {"mounts",
             {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
              {{"destination", "/dev"},
               {"type", "tmpfs"},
               {"source", "tmpfs"},
               {"options", {"nosuid", "mode=755", "size=1m"}}}}},
            {"annotations", annotations},
            {"hooks", {{"createRuntime", hook("createRuntime")}, {"poststop", hook("poststop")}}},
            {"linux",
             {{"cgroupsPath", cgroups_path_},
              {"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}}}}};
        std::ofstream(dir_ + "/bundle/config.json") << config.dump(2);
    }
    // On an initramfs (the VM stage's guest) the root is rootfs, which pivot_root refuses:
    // runc then moves the container's root with MS_MOVE and chroot instead (--no-pivot).
    Result runc_run() {
        std::vector<std::string> argv{runc_, "--root", dir_ + "/runc", "run", "--bundle", dir_ + "/bundle"};
        if (root_is_rootfs()) argv.push_back("--no-pivot");
        argv.push_back(id_);
        return command(argv);
    }
    static bool root_is_rootfs() {
        std::ifstream in("/proc/self/mounts");
        for (std::string dev, where, type; in >> dev >> where >> type; in.ignore(4096, '\n'))
            if (where == "/") return type == "rootfs";
        return false;
    }

    // The cgroup ids the agent's log says it attached the container's cgroup as.
    std::vector<std::string> attached_ids() const {
        std::vector<std::string> ids;
        std::string text = log(), mark = cgroups_path_ + " (id ";
        for (std::size_t at = text.find(mark); at != std::string::npos; at = text.find(mark, at + 1)) {
            std::size_t start = at + mark.size();
            ids.push_back(text.substr(start, text.find(')', start) - start));
        }
        return ids;
    }

    // Nothing of the container is left: runc knows no container, its cgroup is gone, and the
    // agent holds no attachment (no record, no pin of an id it attached; other users of this
    // host's bpffs may hold pins of their own) once it noticed the cgroup go (within a second).
    void expect_nothing_left() {
        auto listed = command({runc_, "--root", dir_ + "/runc", "list", "--quiet"});
        EXPECT_EQ(listed.out, "") << listed.err;
        std::string cgroup = mcpwarden::CgroupLayout::detect().unified_mount + cgroups_path_;
        EXPECT_FALSE(fs::exists(cgroup)) << cgroup;
        std::vector<std::string> left;
        std::error_code ec;
        for (int i = 0; i < 50; ++i) {
            left.clear();
            for (const auto& e : fs::directory_iterator(dir_ + "/state/agent/attachments", ec))
                left.push_back(e.path());
            for (const auto& id : attached_ids())
                if (fs::exists(mcpwarden::sandbox_pin_root() + "/cg-" + id, ec)) left.push_back("pin cg-" + id);
            if (left.empty()) break;
            std::this_thread::sleep_for(100ms);
        }
        EXPECT_EQ(left, std::vector<std::string>{}) << log();
    }

    std::string runc_, dir_, socket_, cgroups_path_, id_;
    AgentProcess agent_;
};

std::string fetch(const TcpListener& l, const char* address) {
    return "wget -q -O - http://" + std::string(address) + ":" + l.port() + "/ 2>&1; echo; ";
}

}  // namespace

// The container's first instruction connects: the allowed listener answers, the other is
// refused with EPERM and audited; after the container, nothing is left.
TEST_F(OciRunc, AnAnnotatedContainerIsConfinedAndNothingIsLeft) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.3");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + allowed.port() + "]\n");
    start_agent();
    write_bundle({{"io.mcpwarden.policy", "probe"}}, fetch(allowed, "127.0.0.2") + fetch(denied, "127.0.0.3"));
    auto r = runc_run();
    EXPECT_EQ(r.exit_code, 0) << r.err << log();
    EXPECT_EQ(r.out.substr(0, 3), "ok\n") << r.out << r.err;
    EXPECT_NE(r.out.find("Operation not permitted"), std::string::npos) << r.out << r.err;
    EXPECT_EQ(allowed.accepted(), 1);
    EXPECT_EQ(denied.accepted(), 0) << "the denied listener was reached";
    bool audited = false;
    for (int i = 0; i < 100 && !audited; ++i) {
        audited = has_event(read_audit(dir_ + "/audit.jsonl"), "127.0.0.3", std::stoi(denied.port()));
        if (!audited) std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(audited) << "no audit line for the denied connect";
    EXPECT_EQ(attached_ids().size(), 1u) << "the agent's log names no attachment of the container's cgroup\n" << log();
    expect_nothing_left();
}

// A policy the agent does not have: the hook fails, runc does not start the container (its
// command, a connect, never runs) and cleans up.
TEST_F(OciRunc, AnUnknownPolicyKeepsTheContainerFromRunning) {
    TcpListener l("127.0.0.2");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    start_agent();
    write_bundle({{"io.mcpwarden.policy", "no-such-policy"}}, fetch(l, "127.0.0.2"));
    auto r = runc_run();
    EXPECT_NE(r.exit_code, 0) << r.out;
    EXPECT_NE(r.err.find("no-such-policy"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not started (fail closed)"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(l.accepted(), 0) << "the container ran although its policy could not be put on it";
    expect_nothing_left();
}

// Without the annotation the hook does nothing: the same container reaches any listener.
TEST_F(OciRunc, WithoutTheAnnotationNothingIsEnforced) {
    TcpListener other("127.0.0.3");
    policy("probe", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    start_agent();
    write_bundle(json::object(), fetch(other, "127.0.0.3"));
    auto r = runc_run();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "ok\n") << r.err;
    EXPECT_EQ(other.accepted(), 1);
    expect_nothing_left();
}
