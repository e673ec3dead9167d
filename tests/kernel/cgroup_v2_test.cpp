// SPDX-License-Identifier: Apache-2.0
// Limits as the kernel sees them, and the cgroup-v2 paths: what a pure-v2 host (most users'
// machines; the VM stage) needs that a hybrid host never exercises. The v2-only tests skip on
// hybrid hosts, where the memory and pids controllers live on v1 hierarchies.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "cgroup.h"
#include "fd.h"
#include "harness.h"

using namespace harness;
using mcpwarden::CgroupVersion;

namespace {

// Set by the VM stage's init: there every limit must land on a v2 controller, never on a
// fallback, or the stage would not test what it claims to.
bool expect_pure_v2() {
    const char* e = std::getenv("MCPWARDEN_EXPECT_PURE_V2");
    return e && std::string(e) == "1";
}

std::map<std::string, std::string> key_values(const std::string& text) {
    std::map<std::string, std::string> kv;
    std::istringstream ss(text);
    for (std::string line; std::getline(ss, line);) {
        auto eq = line.find('=');
        if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return kv;
}

// A cgroup of the test directly under the unified hierarchy's root; removed afterwards with
// whatever mcpwarden created in it.
class ScratchCgroup {
public:
    explicit ScratchCgroup(const std::string& unified_mount) {
        static std::atomic<int> seq{0};
        rel_ = "/mcpwarden-test-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
        path_ = unified_mount + rel_;
        if (::mkdir(path_.c_str(), 0755) != 0)
            throw std::runtime_error("cannot create " + path_ + ": " + std::strerror(errno));
    }
    ~ScratchCgroup() {
        for (const auto& sub : {"/inner/mcpwarden", "/inner", "/mcpwarden"})
            ::rmdir((path_ + sub).c_str());
        if (::rmdir(path_.c_str()) != 0 && errno != ENOENT)
            ADD_FAILURE() << "cannot remove " << path_ << ": " << std::strerror(errno);
    }
    ScratchCgroup(const ScratchCgroup&) = delete;
    ScratchCgroup& operator=(const ScratchCgroup&) = delete;
    const std::string& path() const { return path_; }
    const std::string& rel() const { return rel_; }  // as --cgroup-root takes it

private:
    std::string rel_, path_;
};

std::string read_text(const std::string& path) {
    std::string s;
    mcpwarden::read_file(path, s);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

// Sandbox cgroups left under a base other than the default one.
std::vector<std::string> sandboxes_under(const std::string& base) {
    std::vector<std::string> out;
    DIR* d = ::opendir(mcpwarden::sandbox_parent(base).c_str());
    if (!d) return out;
    while (auto* e = ::readdir(d)) {
        if (std::string(e->d_name).rfind("s-", 0) == 0) out.push_back(e->d_name);
    }
    ::closedir(d);
    return out;
}

// Tests that need memory, pids and cpu on cgroup v2. On a hybrid host scripts/kernel-layout.sh
// selects them out of the kernel stage (the vm stage runs them); here they never skip.
class PureV2 : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        layout_ = mcpwarden::CgroupLayout::detect();
        plan_ = mcpwarden::plan_cgroups(layout_, "");
        bool v2 = plan_.memory == CgroupVersion::v2 && plan_.pids == CgroupVersion::v2 &&
                  plan_.cpu == CgroupVersion::v2;
        if (!v2) {
            FAIL() << "memory/pids/cpu are not on cgroup v2 on this host: PureV2.* run on a "
                      "pure-v2 kernel (the vm stage, scripts/vm/run.sh); scripts/kernel-layout.sh "
                      "leaves them out here";
        }
    }
    mcpwarden::CgroupLayout layout_;
    mcpwarden::CgroupPlan plan_;
};

}  // namespace

class Limits : public KernelTest {};

// The limits asked for are the values in the kernel's files of the sandbox's own cgroups, read
// from inside the sandbox, on whichever hierarchy enforces each.
TEST_F(Limits, ReachTheKernelFiles) {
    auto layout = mcpwarden::CgroupLayout::detect();
    auto plan = mcpwarden::plan_cgroups(layout, "");
    if (expect_pure_v2()) {
        EXPECT_EQ(layout.v1_memory_mount, "");
        EXPECT_EQ(layout.v1_pids_mount, "");
        EXPECT_EQ(layout.v1_cpu_mount, "");
        EXPECT_EQ(plan.memory, CgroupVersion::v2);
        EXPECT_EQ(plan.pids, CgroupVersion::v2);
        EXPECT_EQ(plan.cpu, CgroupVersion::v2);
    }
    // Each enforcing directory, found from /proc/self/cgroup inside the sandbox.
    auto dir_of = [](const std::string& mount, const std::string& controller) {
        std::string field = controller.empty() ? "$2 == \"\"" : "$2 ~ /(^|,)" + controller + "(,|$)/";
        return "d=" + mount + "$(awk -F: '" + field + " {print $3}' /proc/self/cgroup); ";
    };
    auto show = [](const std::string& file) {
        return "echo " + file + "=$(cat \"$d/" + file + "\" 2>/dev/null || echo absent); ";
    };
    std::string script;
    if (plan.memory == CgroupVersion::v2) {
        script += dir_of(layout.unified_mount, "") + show("memory.max") + show("memory.swap.max") +
                  show("memory.oom.group");
    } else if (plan.memory == CgroupVersion::v1) {
        script += dir_of(layout.v1_memory_mount, "memory") + show("memory.limit_in_bytes");
    }
    if (plan.pids == CgroupVersion::v2) script += dir_of(layout.unified_mount, "") + show("pids.max");
    else if (plan.pids == CgroupVersion::v1) script += dir_of(layout.v1_pids_mount, "pids") + show("pids.max");
    if (plan.cpu == CgroupVersion::v2) {
        script += dir_of(layout.unified_mount, "") + show("cpu.max");
    } else if (plan.cpu == CgroupVersion::v1) {
        script += dir_of(layout.v1_cpu_mount, "cpu") + show("cpu.cfs_quota_us") + show("cpu.cfs_period_us");
    }
    auto r = warden({"run", "--memory", "96M", "--pids", "40", "--cpu", "0.5", "--", "sh", "-c", script});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto kv = key_values(r.out);
    if (plan.memory == CgroupVersion::v2) {
        EXPECT_EQ(kv["memory.max"], std::to_string(96u << 20)) << r.out;
        // No swap: absent only when the kernel has no swap accounting at all.
        EXPECT_TRUE(kv["memory.swap.max"] == "0" || kv["memory.swap.max"] == "absent") << r.out;
        EXPECT_EQ(kv["memory.oom.group"], "1") << r.out;
    } else if (plan.memory == CgroupVersion::v1) {
        EXPECT_EQ(kv["memory.limit_in_bytes"], std::to_string(96u << 20)) << r.out;
    }
    if (plan.pids != CgroupVersion::none) {
        EXPECT_EQ(kv["pids.max"], "40") << r.out;
    }
    if (plan.cpu == CgroupVersion::v2) {
        EXPECT_EQ(kv["cpu.max"], "50000 100000") << r.out;
    } else if (plan.cpu == CgroupVersion::v1) {
        EXPECT_EQ(kv["cpu.cfs_quota_us"], "50000") << r.out;
        EXPECT_EQ(kv["cpu.cfs_period_us"], "100000") << r.out;
    }
    EXPECT_EQ(r.report["enforced_by"]["memory"], std::string(mcpwarden::to_string(plan.memory)));
    EXPECT_EQ(r.report["enforced_by"]["pids"], std::string(mcpwarden::to_string(plan.pids)));
    EXPECT_EQ(r.report["enforced_by"]["cpu"], std::string(mcpwarden::to_string(plan.cpu)));
}

// A CPU limit throttles: a busy loop under --cpu 0.2 gets about a fifth of one CPU, which the
// kernel's own throttling counters confirm.
TEST_F(Limits, CpuLimitThrottles) {
    auto layout = mcpwarden::CgroupLayout::detect();
    auto plan = mcpwarden::plan_cgroups(layout, "");
    if (plan.cpu == CgroupVersion::none) FAIL() << "no cpu controller on this host";
    std::string stat = plan.cpu == CgroupVersion::v2
        ? "d=" + layout.unified_mount + "$(awk -F: '$2 == \"\" {print $3}' /proc/self/cgroup)"
        : "d=" + layout.v1_cpu_mount + "$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' /proc/self/cgroup)";
    // Busy for one to two seconds of wall time, then report the throttling counters of the sandbox.
    std::string script = stat + "; end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done; "
                         "grep -E '^(nr_throttled|nr_periods)' \"$d/cpu.stat\"";
    auto r = warden({"run", "--cpu", "0.2", "--timeout", "60s", "--", "sh", "-c", script});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, long> st;
    std::istringstream ss(r.out);
    for (std::string k; ss >> k;) ss >> st[k];
    EXPECT_GT(st["nr_periods"], 0) << r.out;
    EXPECT_GT(st["nr_throttled"], 0) << "a busy loop under --cpu 0.2 was never throttled: " << r.out;
}

// mcpwarden enables the controllers it needs in a cgroup root that has none enabled yet (as a
// freshly delegated subtree has), at both levels: the root and its "mcpwarden" directory,
// which is removed with the last sandbox.
TEST_F(PureV2, EnablesControllersInAFreshCgroupRoot) {
    ScratchCgroup root(layout_.unified_mount);
    ASSERT_EQ(read_text(root.path() + "/cgroup.subtree_control"), "");
    auto r = warden({"run", "--cgroup-root", root.rel(), "--memory", "64M", "--", program("memhog"), "512"});
    EXPECT_EQ(r.exit_code, 120) << r.err;
    EXPECT_EQ(r.report["status"], "memory_exceeded") << r.report.dump();
    auto p = warden({"run", "--cgroup-root", root.rel(), "--pids", "16", "--timeout", "60s", "--", program("forkbomb")});
    EXPECT_EQ(p.exit_code, 121) << p.err;
    EXPECT_EQ(p.report["status"], "pids_exceeded") << p.report.dump();
    auto c = warden({"run", "--cgroup-root", root.rel(), "--cpu", "0.5", "--", "true"});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    // The limits took effect, so the "mcpwarden" directory had them too; it went with the
    // last sandbox, and the root keeps what was enabled in it.
    std::string enabled = read_text(root.path() + "/cgroup.subtree_control");
    for (const char* ctl : {"memory", "pids", "cpu"}) EXPECT_NE(enabled.find(ctl), std::string::npos) << enabled;
    EXPECT_NE(::access(mcpwarden::sandbox_parent(root.path()).c_str(), F_OK), 0);
    EXPECT_EQ(sandboxes_under(root.path()), std::vector<std::string>{});
}

// Under a cgroup root whose parent does not hand out the memory controller, a memory limit is
// refused (fail closed), and --allow-degraded falls back to an rlimit while pids stays on v2.
TEST_F(PureV2, NoMemoryControllerFailsClosed) {
    ScratchCgroup outer(layout_.unified_mount);
    ASSERT_TRUE(mcpwarden::write_file(outer.path() + "/cgroup.subtree_control", "+pids"));
    ASSERT_EQ(::mkdir((outer.path() + "/inner").c_str(), 0755), 0);
    std::string root = outer.rel() + "/inner";
    std::string marker = state_dir() + "/v2-degraded-marker";
    auto refused = warden({"run", "--cgroup-root", root, "--memory", "64M", "--pids", "8", "--", "touch", marker});
    EXPECT_EQ(refused.exit_code, 125) << refused.err;
    EXPECT_NE(refused.err.find("no memory controller"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--allow-degraded"), std::string::npos) << refused.err;
    EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "the command ran although refused";

    auto degraded = warden({"run", "--cgroup-root", root, "--memory", "64M", "--pids", "8", "--allow-degraded",
                            "--", "sh", "-c", "ulimit -v"});
    EXPECT_EQ(degraded.exit_code, 0) << degraded.err;
    EXPECT_EQ(degraded.out, std::to_string(64 * 1024) + "\n");
    EXPECT_EQ(degraded.report["degraded"], true) << degraded.report.dump();
    EXPECT_EQ(degraded.report["enforced_by"]["pids"], "v2") << degraded.report.dump();
    EXPECT_EQ(sandboxes_under(outer.path() + "/inner"), std::vector<std::string>{});
}

// cgroup v2 hands controllers only to children of a cgroup without processes of its own. When
// mcpwarden runs in such a cgroup (a login session's scope, typically), limits cannot be
// enforced beneath it: it must refuse and say what to do. Without limits it runs.
TEST_F(PureV2, BaseHoldingProcessesIsRefusedWithAdvice) {
    ScratchCgroup session(layout_.unified_mount);
    std::string enter = "echo $$ > " + session.path() + "/cgroup.procs && exec " MCPWARDEN_BIN
                        " run --state-dir " + state_dir() + " ";
    auto limited = command({"sh", "-c", enter + "--memory 64M -- true"});
    EXPECT_EQ(limited.exit_code, 125) << limited.err;
    EXPECT_NE(limited.err.find("holds processes"), std::string::npos) << limited.err;
    EXPECT_NE(limited.err.find("--cgroup-root"), std::string::npos) << limited.err;
    auto plain = command({"sh", "-c", enter + "-- true"});
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_EQ(sandboxes_under(session.path()), std::vector<std::string>{});
}
