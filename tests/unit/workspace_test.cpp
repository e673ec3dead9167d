// SPDX-License-Identifier: Apache-2.0
// The persistent cache of a sandbox run as a fixed account: per policy and account for a
// standalone run, and per client too for the agent's sandboxes (every client's server then runs
// as that same account). The pair's own uid is in identity_test.cpp.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "workspace.h"

using namespace mcpwarden;

TEST(Workspace, AgentClientsOfAFixedAccountGetCachesOfTheirOwn) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (the directories are handed to the sandbox user)";
    char tmpl[] = "/tmp/mcpwarden-ws-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    std::string state = std::string(tmpl) + "/state";
    UserIdentity nobody{"nobody", 65534, 65534};
    Workspace standalone(state, "github", nobody, std::nullopt);
    Workspace alice(state, "github", nobody, std::nullopt, 1000);
    Workspace bob(state, "github", nobody, std::nullopt, 1001);
    EXPECT_EQ(standalone.cache(), state + "/cache/github/65534");
    EXPECT_EQ(alice.cache(), state + "/cache/github/65534-for-1000");
    EXPECT_EQ(bob.cache(), state + "/cache/github/65534-for-1001");
    for (const auto* ws : {&standalone, &alice, &bob}) {
        struct stat st {};
        ASSERT_EQ(::lstat(ws->cache().c_str(), &st), 0) << ws->cache();
        EXPECT_EQ(st.st_uid, 65534u);
        EXPECT_EQ(st.st_mode & 07777, 0700u);
    }
    std::filesystem::remove_all(tmpl);
}
