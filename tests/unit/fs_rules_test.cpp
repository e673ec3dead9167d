// SPDX-License-Identifier: Apache-2.0
// The filesystem view's rule table: what `policy explain --path` answers and the run mounts.
#include <gtest/gtest.h>

#include "error.h"
#include "fs_rules.h"
#include "policy.h"
#include "policy_errors.h"

using namespace mcpwarden;
using fsrules::Access;
using policytest::errors_of;
using policytest::expect_error_at;

namespace {

Access access_of(const std::string& path, const FilesystemPolicy& p = {}, const fsrules::ViewContext& ctx = {}) {
    return fsrules::decide(path, p, ctx).access;
}

}  // namespace

TEST(FsRules, TheDefaultView) {
    EXPECT_EQ(access_of("/"), Access::read_only);
    EXPECT_EQ(access_of("/usr/bin/node"), Access::read_only);
    EXPECT_EQ(access_of("/etc/passwd"), Access::read_only);
    for (const char* hidden : {"/home", "/home/alice/.ssh/id_ed25519", "/root", "/run/docker.sock",
                               "/var/run/docker.sock", "/etc/mcpwarden/agent.yaml",
                               "/var/lib/mcpwarden/cache/other/1879048200", "/dev/sda"}) {
        EXPECT_EQ(access_of(hidden), Access::hidden) << hidden;
    }
    for (const char* priv : {"/tmp", "/tmp/x", "/var/tmp/y", "/dev/shm/z"}) {
        EXPECT_EQ(access_of(priv), Access::private_tmp) << priv;
    }
    EXPECT_EQ(access_of("/dev/null"), Access::read_write);
    EXPECT_EQ(access_of("/dev/urandom"), Access::read_write);
    // Only this sandbox's own cache and workspace show through the hidden state directory.
    fsrules::ViewContext ctx{"/var/lib/mcpwarden", "/var/lib/mcpwarden/sandbox", "/var/lib/mcpwarden/cache/gh/1879048200"};
    EXPECT_EQ(access_of("/var/lib/mcpwarden/cache/gh/1879048200/npm", {}, ctx), Access::read_write);
    EXPECT_EQ(access_of("/var/lib/mcpwarden/sandbox/home", {}, ctx), Access::read_write);
    EXPECT_EQ(access_of("/var/lib/mcpwarden/cache/gh/1879048201", {}, ctx), Access::hidden);
    EXPECT_EQ(access_of("/var/lib/mcpwarden2"), Access::read_only) << "a prefix of a name is not its parent";
}

TEST(FsRules, TheMostSpecificRuleDecidesAndNamesItself) {
    FilesystemPolicy p;
    p.read_write = {"/home/alice/project"};
    p.read_only = {"/home/alice/project/.git", "/srv/data"};
    p.hide = {"/home/alice/project/secrets", "/etc/ssl/private"};
    auto d = fsrules::decide("/home/alice/project/src/main.c", p, {});
    EXPECT_EQ(d.access, Access::read_write);
    EXPECT_TRUE(d.writable());
    EXPECT_TRUE(d.rule.from_policy);
    EXPECT_EQ(d.rule.path, "/home/alice/project");
    EXPECT_EQ(d.rule.describe(), "read-write /home/alice/project (policy filesystem.read_write)");
    EXPECT_EQ(access_of("/home/alice/project/.git/config", p), Access::read_only);
    EXPECT_EQ(access_of("/home/alice/project/secrets/key", p), Access::hidden);
    EXPECT_EQ(access_of("/home/alice/other", p), Access::hidden);
    EXPECT_EQ(access_of("/etc/ssl/private/x.pem", p), Access::hidden);
    auto home = fsrules::decide("/home/bob", p, {});
    EXPECT_FALSE(home.rule.from_policy);
    EXPECT_EQ(home.rule.describe(), "hidden /home (default: users' homes are hidden)");
    // The order to build the view in: parents before children.
    auto rules = fsrules::view_rules(p, {});
    auto index = [&](const std::string& path) {
        for (size_t i = 0; i < rules.size(); ++i) if (rules[i].path == path) return i;
        return rules.size();
    };
    EXPECT_LT(index("/"), index("/home"));
    EXPECT_LT(index("/home"), index("/home/alice/project"));
    EXPECT_LT(index("/home/alice/project"), index("/home/alice/project/.git"));
}

TEST(FsRules, PathsAreNormalised) {
    std::string why;
    EXPECT_EQ(fsrules::normalise_path("/srv//data/", &why), "/srv/data");
    EXPECT_EQ(fsrules::normalise_path("/", &why), "/");
    for (const char* bad : {"", "srv/data", "~/x", "/srv/../etc", "/srv/./data", "/a/.."}) {
        EXPECT_FALSE(fsrules::normalise_path(bad, &why)) << bad;
        EXPECT_FALSE(why.empty());
    }
    EXPECT_FALSE(fsrules::normalise_path(std::string("/a\0b", 4), &why));
    EXPECT_TRUE(fsrules::path_within("/a/b", "/a"));
    EXPECT_FALSE(fsrules::path_within("/ab", "/a"));
    EXPECT_TRUE(fsrules::path_within("/a", "/"));
}

TEST(FsRules, ThePolicySectionIsParsedNormalised) {
    Policy p = parse_policy("name: fs\nfilesystem:\n  read_only: [/srv/data/, /opt//tools]\n"
                            "  read_write:\n    - /home/alice/project\n  hide:\n    - /etc/ssl/private\n",
                            "p.yaml");
    EXPECT_EQ(p.filesystem.read_only, (std::vector<std::string>{"/srv/data", "/opt/tools"}));
    EXPECT_EQ(p.filesystem.read_write, (std::vector<std::string>{"/home/alice/project"}));
    EXPECT_EQ(p.filesystem.hide, (std::vector<std::string>{"/etc/ssl/private"}));
    EXPECT_TRUE(parse_policy("name: fs\nfilesystem:\n", "p.yaml").filesystem.read_only.empty());
}

TEST(FsRules, BadPolicyPathsAreErrorsAtTheirPosition) {
    expect_error_at("name: x\nfilesystem:\n  read_only:\n    - srv/data\n", 4, 7, "not an absolute path");
    expect_error_at("name: x\nfilesystem:\n  read_only:\n    - /srv/../etc\n", 4, 7, "'..'");
    expect_error_at("name: x\nfilesystem:\n  read_write:\n    - /\n", 4, 7, "whole host");
    expect_error_at("name: x\nfilesystem:\n  read_write:\n    - /var/lib/mcpwarden/cache/other\n", 4, 7,
                    "state directory");
    expect_error_at("name: x\nfilesystem:\n  read_only:\n    - /etc/mcpwarden\n", 4, 7, "/etc/mcpwarden");
    expect_error_at("name: x\nfilesystem:\n  read_write:\n    - /proc/1\n", 4, 7, "/proc");
    expect_error_at("name: x\nfilesystem:\n  read_write:\n    - /dev/sda\n", 4, 7, "/dev");
    expect_error_at("name: x\nfilesystem:\n  read_write:\n    - /sys/kernel\n", 4, 7, "/sys");
    expect_error_at("name: x\nfilesystem:\n  read_only:\n    - /srv\n    - /srv/\n", 5, 7, "listed twice");
    expect_error_at("name: x\nfilesystem:\n  read_only: [/srv]\n  hide: [/srv]\n", 4, 10,
                    "already in filesystem.read_only");
    expect_error_at("name: x\nfilesystem:\n  writable: [/srv]\n", 3, 3, "unknown key 'writable'");
    expect_error_at("name: x\nfilesystem:\n  read_only: /srv\n", 3, 14, "must be a list");
    expect_error_at("name: x\nfilesystem: [/srv]\n", 2, 13, "must be a mapping");
    // Every error at once.
    EXPECT_EQ(errors_of("name: x\nfilesystem:\n  read_only: [a, /b/.., /]\n").size(), 3u);
}

TEST(FsRules, BadUsersAreErrorsAtTheirPosition) {
    expect_error_at("name: x\nuser: root\n", 2, 7, "root");
    expect_error_at("name: x\nuser: 0\n", 2, 7, "root");
    expect_error_at("name: x\nuser: \"4294967295\"\n", 2, 7, "not a valid uid");
    expect_error_at("name: x\nuser: -1\n", 2, 7, "not a valid uid");
    expect_error_at("name: x\nuser: 99999999999999999999\n", 2, 7, "not a valid uid");
    EXPECT_EQ(parse_policy("name: x\nuser: nobody\n", "p.yaml").user, "nobody");
    EXPECT_EQ(parse_policy("name: x\nuser: 4294967294\n", "p.yaml").user, "4294967294");
}
