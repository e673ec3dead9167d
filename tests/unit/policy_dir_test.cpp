// SPDX-License-Identifier: Apache-2.0
// Policies by name from a policy directory, and the default directory of a build tree.
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include <gtest/gtest.h>

#include "error.h"
#include "policy_dir.h"

namespace fs = std::filesystem;
using namespace mcpwarden;

namespace {

class TempTree {
public:
    TempTree() {
        char tmpl[] = "/tmp/mcpwarden-policydir-XXXXXX";
        root_ = ::mkdtemp(tmpl);
    }
    ~TempTree() {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }
    fs::path path(const std::string& rel) const { return root_ / rel; }
    void write(const std::string& rel, const std::string& text) const {
        fs::create_directories(path(rel).parent_path());
        std::ofstream(path(rel)) << text;
    }

private:
    fs::path root_;
};

std::string usage_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::usage);
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

}  // namespace

TEST(PolicyDir, PathOrName) {
    EXPECT_TRUE(is_policy_path("github.yaml"));
    EXPECT_TRUE(is_policy_path("github.yml"));
    EXPECT_TRUE(is_policy_path("./github"));
    EXPECT_TRUE(is_policy_path("/etc/mcpwarden/policies/github.yaml"));
    EXPECT_TRUE(is_policy_path("dir/github"));
    EXPECT_FALSE(is_policy_path("github"));
    EXPECT_FALSE(is_policy_path("package-fetch"));
    EXPECT_FALSE(is_policy_path("deny-all"));
}

TEST(PolicyDir, NameResolvesToDirNameYaml) {
    TempTree t;
    t.write("p/github.yaml", "name: github\n");
    EXPECT_EQ(resolve_policy("github", t.path("p").string()), t.path("p/github.yaml").string());
}

TEST(PolicyDir, PathIsTakenAsItIs) {
    TempTree t;
    t.write("p/x.yaml", "name: x\n");
    std::string file = t.path("p/x.yaml").string();
    EXPECT_EQ(resolve_policy(file, "/nonexistent"), file);
}

TEST(PolicyDir, MissingFileIsNamed) {
    std::string msg = usage_message([] { resolve_policy("/nonexistent/dir/x.yaml", ""); });
    EXPECT_NE(msg.find("policy file /nonexistent/dir/x.yaml does not exist"), std::string::npos) << msg;
}

TEST(PolicyDir, UnknownNameListsWhatTheDirectoryHolds) {
    TempTree t;
    t.write("p/github.yaml", "name: github\n");
    t.write("p/slack.yaml", "name: slack\n");
    t.write("p/notes.txt", "not a policy\n");
    std::string dir = t.path("p").string();
    std::string msg = usage_message([&] { resolve_policy("gihub", dir); });
    EXPECT_NE(msg.find("no policy named 'gihub'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(dir + "/gihub.yaml does not exist"), std::string::npos) << msg;
    EXPECT_NE(msg.find("policies in " + dir + ": github, slack"), std::string::npos) << msg;
    EXPECT_EQ(policy_names(dir), (std::vector<std::string>{"github", "slack"}));
}

TEST(PolicyDir, MissingDirectorySaysHowToChooseOne) {
    std::string msg = usage_message([] { resolve_policy("github", "/nonexistent/policies"); });
    EXPECT_NE(msg.find("the policy directory /nonexistent/policies does not exist"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--policy-dir"), std::string::npos) << msg;
}

TEST(PolicyDir, BadNameIsRefused) {
    std::string msg = usage_message([] { resolve_policy("git hub", "/tmp"); });
    EXPECT_NE(msg.find("neither a policy file"), std::string::npos) << msg;
    usage_message([] { resolve_policy("..", "/tmp"); });
}

TEST(PolicyDir, LoadByName) {
    TempTree t;
    t.write("p/demo.yaml", "name: demo\nlimits: { pids: 9 }\n");
    Policy p = load_policy_ref("demo", t.path("p").string());
    EXPECT_EQ(p.name, "demo");
    EXPECT_EQ(p.limits.pids, 9u);
}

TEST(PolicyDir, BuildTreeUsesTheSourceDirectoryOfItsCache) {
    TempTree t;
    t.write("src/policies/github.yaml", "name: github\n");
    t.write("elsewhere/build/CMakeCache.txt",
            "# cache\nmcpwarden_SOURCE_DIR:STATIC=" + t.path("src").string() + "\n");
    t.write("elsewhere/build/bin/mcpwarden", "");
    EXPECT_EQ(default_policy_dir(t.path("elsewhere/build/bin/mcpwarden").string()),
              t.path("src/policies").string());
}

TEST(PolicyDir, BuildTreeInsideTheCheckoutFallsBackToExeDotDotDotDot) {
    TempTree t;
    t.write("checkout/policies/github.yaml", "name: github\n");
    t.write("checkout/build/CMakeCache.txt", "# no source dir recorded\n");
    t.write("checkout/build/bin/mcpwarden", "");
    EXPECT_EQ(default_policy_dir(t.path("checkout/build/bin/mcpwarden").string()),
              t.path("checkout/policies").string());
}

TEST(PolicyDir, InstalledBinaryUsesEtc) {
    TempTree t;
    t.write("usr/bin/mcpwarden", "");
    t.write("policies/x.yaml", "name: x\n");  // <exe>/../../policies exists, but no build tree
    // The configured ${sysconfdir}/mcpwarden/policies (paths.h): /etc/... for prefix /usr.
    EXPECT_EQ(default_policy_dir(t.path("usr/bin/mcpwarden").string()), MCPWARDEN_POLICY_DIR);
    EXPECT_EQ(default_policy_dir(""), MCPWARDEN_POLICY_DIR);
}

TEST(PolicyDir, ThisBuildFindsTheCheckout) {
    // unit_tests runs from <build>/bin, like mcpwarden: names resolve in this checkout.
    fs::path source = fs::path(__FILE__).parent_path().parent_path().parent_path();
    EXPECT_EQ(fs::weakly_canonical(default_policy_dir()), fs::weakly_canonical(source / "policies"));
}
