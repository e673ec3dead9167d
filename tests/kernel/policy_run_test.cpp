// SPDX-License-Identifier: Apache-2.0
// `mcpwarden run --policy NAME`: a policy by name from the policy directory, as root.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

using namespace harness;
namespace fs = std::filesystem;

class PolicyByName : public KernelTest {};

// The checkout (policies/ next to the build tree) exists on the host only: the VM stage excludes *HostOnly*.
TEST_F(PolicyByName, HostOnlyRunFindsShippedPolicyInTheCheckout) {
    auto r = warden({"run", "--policy", "deny-all", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.report["policy"], "deny-all") << r.report.dump();
    // deny-all's limits apply: 256Mi, 64 pids.
    EXPECT_EQ(r.report["limits"]["memory_bytes"], 256u << 20) << r.report.dump();
    EXPECT_EQ(r.report["limits"]["pids"], 64) << r.report.dump();
}

TEST_F(PolicyByName, RunWithPolicyDir) {
    char tmpl[] = "/tmp/mcpwarden-pdir-XXXXXX";
    fs::path dir = ::mkdtemp(tmpl);
    std::ofstream(dir / "tiny.yaml") << "name: tiny\nlimits: { pids: 17 }\n";
    auto r = warden({"run", "--policy-dir", dir.string(), "--policy", "tiny", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.report["policy"], "tiny") << r.report.dump();
    EXPECT_EQ(r.report["limits"]["pids"], 17) << r.report.dump();
    // The same file by path.
    auto by_path = warden({"run", "--policy", (dir / "tiny.yaml").string(), "--", "true"});
    EXPECT_EQ(by_path.exit_code, 0) << by_path.err;
    EXPECT_EQ(by_path.report["policy"], "tiny");
    // An invalid policy by name: every error with its position, nothing runs.
    std::ofstream(dir / "broken.yaml") << "name: broken\nlimits: { pids: many }\n";
    auto broken = warden({"run", "--policy-dir", dir.string(), "--policy", "broken", "--", "true"});
    EXPECT_EQ(broken.exit_code, 78);
    EXPECT_NE(broken.err.find((dir / "broken.yaml").string() + ":2:17: limits.pids"), std::string::npos) << broken.err;
    fs::remove_all(dir);
}
