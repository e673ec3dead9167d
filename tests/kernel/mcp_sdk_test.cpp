// SPDX-License-Identifier: Apache-2.0
// The official MCP TypeScript SDK client against @modelcontextprotocol/server-everything, both
// from npm, through `mcpwarden run` (tests/mcp-sdk/sdk.test.mjs); the SDK's v1 and v2 clients
// each run one session directly and through mcpwarden (clients.test.mjs); server-everything,
// server-filesystem, server-memory and server-sequential-thinking run directly and through
// mcpwarden and compared (tests/mcp-sdk/servers.test.mjs); every shipped policy serves
// server-everything to the SDK client with only its command pin changed (shipped.test.mjs). The packages are installed
// here with `npm ci` from the committed lock file when node_modules is missing or stale, so a
// fresh clone works. In CI a missing node or npm is a failure, like every kernel test.
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "mcp_common.h"

using namespace harness;

namespace {

const std::string kDir = std::string(MCPWARDEN_SOURCE_DIR) + "/tests/mcp-sdk";

bool newer(const std::string& a, const std::string& b) {  // a modified after b (or b missing)
    struct stat sa {}, sb {};
    if (::stat(b.c_str(), &sb) != 0) return true;
    if (::stat(a.c_str(), &sa) != 0) return false;
    return sa.st_mtim.tv_sec > sb.st_mtim.tv_sec ||
           (sa.st_mtim.tv_sec == sb.st_mtim.tv_sec && sa.st_mtim.tv_nsec > sb.st_mtim.tv_nsec);
}

class McpSdk : public KernelTest {
protected:
    static void SetUpTestSuite() {
        if (::geteuid() != 0) return;
        if (!newer(kDir + "/package-lock.json", kDir + "/node_modules/.package-lock.json")) return;
        Options o;
        o.kill_after = std::chrono::seconds(300);
        install_ = command({"sh", "-c", "cd '" + kDir + "' && npm ci --no-audit --no-fund --loglevel=error"}, o);
    }
    static Result install_;
};
Result McpSdk::install_ = {0, "", "", nullptr, std::chrono::milliseconds(0)};

// node --test FILE as the SDK tests run it; the sandboxes' teardown is awaited afterwards.
Result node_test(const std::string& file) {
    Options o;
    o.env = {{"MCPWARDEN_BIN", MCPWARDEN_BIN}, {"MCPWARDEN_STATE_DIR", state_dir()}};
    o.kill_after = std::chrono::seconds(180);
    auto r = command({"node", "--test", "--test-concurrency=1", "--test-reporter=spec", kDir + "/" + file}, o);
    // The SDK's close() resolves when mcpwarden's process closes; its teardown (the sandbox
    // killed and removed) is awaited here rather than assumed: a sandbox that outlives it for
    // more than a few seconds fails the leftover check of the fixture.
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while ((!leftover_processes().empty() || !leftover_cgroups().empty()) && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return r;
}

// Runs FILE's tests (npm ci must have worked) and expects all `passes` of them to pass.
void expect_node_tests(const Result& install, const std::string& file, int passes) {
    ASSERT_EQ(install.exit_code, 0) << "npm ci in tests/mcp-sdk failed (node 20 and the npm registry are needed):\n"
                                    << install.out << install.err;
    auto r = node_test(file);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("pass " + std::to_string(passes)), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("fail 0"), std::string::npos) << r.out;
}

}  // namespace

TEST_F(McpSdk, OfficialClientAgainstServerEverything) { expect_node_tests(install_, "sdk.test.mjs", 9); }

TEST_F(McpSdk, ClientsV1AndV2DirectAndThroughMcpwarden) { expect_node_tests(install_, "clients.test.mjs", 3); }

TEST_F(McpSdk, RealServersDirectAndThroughMcpwarden) { expect_node_tests(install_, "servers.test.mjs", 8); }

TEST_F(McpSdk, ShippedPoliciesServeARealServer) {
    auto shipped = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::string(MCPWARDEN_SOURCE_DIR) + "/policies"))
        if (e.path().extension() == ".yaml") ++shipped;
    expect_node_tests(install_, "shipped.test.mjs", shipped + 1);
}
