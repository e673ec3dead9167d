// SPDX-License-Identifier: Apache-2.0
// Hardening pieces that need no kernel privileges: `command:`, `cache:`, limits.open_files and
// allow_user_namespaces in policies, the command match, the secrets check, files opened by
// open_output, and the cache trim.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cache_bound.h"
#include "command_pin.h"
#include "error.h"
#include "policy.h"
#include "policy_inspect.h"
#include "safe_output.h"

using namespace mcpwarden;
namespace fs = std::filesystem;

namespace {

std::string policy_errors(const std::string& text) {
    try {
        parse_policy(text, "p.yaml");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/mcpwarden-unit-hard-XXXXXX";
        if (::mkdtemp(tmpl)) path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

bool matches(const Policy& p, const std::vector<std::string>& argv) {
    return command_matches(p.command, argv, "/usr/bin/dash", "/usr/bin/dash", nullptr);
}

}  // namespace

TEST(HardeningPolicy, CommandExactAndPrefix) {
    Policy exact = parse_policy("name: p\ncommand: [npx, -y, \"@modelcontextprotocol/server-github\"]\n", "p.yaml");
    EXPECT_TRUE(exact.command.pinned());
    EXPECT_FALSE(exact.command.prefix);
    EXPECT_EQ(exact.command.argv, (std::vector<std::string>{"npx", "-y", "@modelcontextprotocol/server-github"}));
    EXPECT_EQ(exact.command.where.line, 2);
    std::string why;
    EXPECT_TRUE(command_matches(exact.command, {"npx", "-y", "@modelcontextprotocol/server-github"}, "", "", &why));
    EXPECT_FALSE(command_matches(exact.command, {"npx", "-y", "@modelcontextprotocol/server-github", "x"}, "", "", &why));
    EXPECT_NE(why.find("arguments after"), std::string::npos) << why;
    EXPECT_FALSE(command_matches(exact.command, {"/usr/bin/env"}, "", "", &why));
    EXPECT_FALSE(command_matches(exact.command, {"npx", "-y", "evil"}, "", "", &why));
    EXPECT_FALSE(command_matches(exact.command, {"npx", "-y"}, "", "", &why));

    Policy prefix = parse_policy("name: p\ncommand:\n  prefix: [sh, -c]\n  args: [\"echo *\", \"--x=?\"]\n", "p.yaml");
    EXPECT_TRUE(prefix.command.prefix);
    EXPECT_TRUE(matches(prefix, {"sh", "-c", "echo hi"}));
    EXPECT_TRUE(matches(prefix, {"sh", "-c", "echo hi", "--x=1"}));
    EXPECT_TRUE(matches(prefix, {"sh", "-c"}));
    EXPECT_FALSE(matches(prefix, {"sh", "-c", "id"}));
    // The same file under the same name: /bin/sh for sh; another name is another program
    // to a multi-call binary.
    EXPECT_TRUE(matches(prefix, {"/bin/sh", "-c", "echo hi"}));
    EXPECT_FALSE(matches(prefix, {"/bin/dash", "-c", "echo hi"}));
    EXPECT_FALSE(command_matches(prefix.command, {"/bin/sh", "-c", "echo hi"}, "/usr/bin/dash", "/usr/bin/bash", nullptr));

    Policy none = parse_policy("name: p\n", "p.yaml");
    EXPECT_TRUE(command_matches(none.command, {"anything"}, "", "", nullptr));
}

TEST(HardeningPolicy, CommandErrors) {
    EXPECT_NE(policy_errors("name: p\ncommand: npx\n").find("p.yaml:2:10: command must be a list"), std::string::npos)
        << policy_errors("name: p\ncommand: npx\n");
    EXPECT_NE(policy_errors("name: p\ncommand: []\n").find("must not be empty"), std::string::npos);
    EXPECT_NE(policy_errors("name: p\ncommand:\n  prefix: [sh]\n").find("command.args must say"), std::string::npos);
    EXPECT_NE(policy_errors("name: p\ncommand:\n  args: [x]\n").find("command needs prefix"), std::string::npos);
    EXPECT_NE(policy_errors("name: p\ncommand:\n  prefix: [sh]\n  args: [x]\n  other: 1\n").find("unknown key 'other'"),
              std::string::npos);
}

TEST(HardeningPolicy, CacheOpenFilesUserNamespaces) {
    Policy p = parse_policy("name: p\ncache: {max_size: 64Mi, on_full: refuse}\nlimits: {open_files: 256}\n"
                            "allow_user_namespaces: true\n",
                            "p.yaml");
    EXPECT_EQ(p.cache.max_size, 64u << 20);
    EXPECT_EQ(p.cache.on_full, CachePolicy::OnFull::refuse);
    EXPECT_EQ(p.limits.open_files, 256u);
    EXPECT_TRUE(p.allow_user_namespaces);
    Policy d = parse_policy("name: p\n", "p.yaml");
    EXPECT_FALSE(d.cache.max_size);
    EXPECT_EQ(d.cache.on_full, CachePolicy::OnFull::trim);
    EXPECT_FALSE(d.limits.open_files);
    EXPECT_FALSE(d.allow_user_namespaces);
    EXPECT_NE(policy_errors("name: p\ncache: {on_full: later}\n").find("cache.on_full must be trim or refuse"),
              std::string::npos)
        << policy_errors("name: p\ncache: {on_full: later}\n");
    EXPECT_NE(policy_errors("name: p\nlimits: {open_files: 3}\n").find("limits.open_files must be between 16"), std::string::npos);
    EXPECT_NE(policy_errors("name: p\nallow_user_namespaces: yes\n").find("must be true or false"), std::string::npos);
}

TEST(HardeningPolicy, SecretsWithoutAPinnedCommandWarn) {
    Policy from_file = parse_policy("name: p\nenv:\n  set:\n    CONFIG: {file: /etc/x}\n", "p.yaml");
    EXPECT_EQ(policy_secrets(from_file), std::vector<std::string>{"CONFIG (from /etc/x)"});
    EXPECT_NE(unpinned_secrets_warning(from_file).find("does not pin its command"), std::string::npos);
    Policy passed = parse_policy("name: p\nenv:\n  pass: [LANG, GITHUB_TOKEN, api_key, DB_PASSWORD, MY_SECRET]\n", "p.yaml");
    EXPECT_EQ(policy_secrets(passed).size(), 4u);
    Policy harmless = parse_policy("name: p\nenv:\n  pass: [LANG, HOME]\n  set: {MODE: fast}\n", "p.yaml");
    EXPECT_TRUE(policy_secrets(harmless).empty());
    EXPECT_EQ(unpinned_secrets_warning(harmless), "");
    Policy pinned = parse_policy("name: p\ncommand: [server]\nenv:\n  pass: [GITHUB_TOKEN]\n", "p.yaml");
    EXPECT_EQ(unpinned_secrets_warning(pinned), "");
    // policy validate shows it, at the env section.
    auto check = check_policy_text("name: p\nenv:\n  pass: [GITHUB_TOKEN]\n", "p.yaml");
    ASSERT_EQ(check.warnings.size(), 1u);
    EXPECT_EQ(check.warnings[0].where.line, 2);
    EXPECT_NE(check.warnings[0].message.find("GITHUB_TOKEN (passed)"), std::string::npos);
}

TEST(SafeOutput, RefusesWhatCouldRedirectTheWrite) {
    TempDir d;
    std::string shared = d.path + "/shared", sticky = d.path + "/sticky", mine = d.path + "/mine";
    fs::create_directory(shared);
    fs::create_directory(sticky);
    fs::create_directory(mine);
    ::chmod(shared.c_str(), 0777);
    ::chmod(sticky.c_str(), 01777);
    ::chmod(mine.c_str(), 0755);
    std::string target = mine + "/target";
    std::ofstream(target) << "keep";
    auto refused = [](const std::string& path, const std::string& fragment) {
        try {
            open_output(path, OutputMode::truncate, "--report");
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::usage);
            EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
            return;
        }
        ADD_FAILURE() << path << " was opened";
    };
    refused(shared + "/r.json", "writable by other users");
    EXPECT_FALSE(fs::exists(shared + "/r.json")) << "nothing created";
    fs::create_symlink(target, mine + "/link");
    refused(mine + "/link", "symbolic link");
    fs::create_symlink(target, sticky + "/link");
    refused(sticky + "/link", "symbolic link");
    ASSERT_EQ(::mkfifo((mine + "/fifo").c_str(), 0600), 0);
    refused(mine + "/fifo", "FIFO");
    fs::create_hard_link(target, mine + "/hard");
    refused(mine + "/hard", "hard links");
    refused(mine + "/", "not a file name");
    EXPECT_EQ(fs::file_size(target), 4u);

    // A new file in a sticky directory, or one of our own anywhere trusted: opened, truncated.
    UniqueFd a = open_output(sticky + "/new.json", OutputMode::truncate, "--report");
    EXPECT_TRUE(a);
    struct stat st {};
    ASSERT_EQ(::stat((sticky + "/new.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    std::ofstream(mine + "/old.json") << "previous contents";
    UniqueFd b = open_output(mine + "/old.json", OutputMode::truncate, "--report");
    EXPECT_EQ(fs::file_size(mine + "/old.json"), 0u);
    std::ofstream(mine + "/audit.jsonl") << "line\n";
    UniqueFd c = open_output(mine + "/audit.jsonl", OutputMode::append, "--audit");
    ASSERT_TRUE(write_all(c.get(), "more\n", 5));
    EXPECT_EQ(fs::file_size(mine + "/audit.jsonl"), 10u);
}

TEST(CacheBound, TrimsLeastRecentlyUsedWithoutFollowingLinks) {
    TempDir d;
    std::string cache = d.path + "/cache", outside = d.path + "/outside";
    fs::create_directories(cache + "/a/b");
    fs::create_directories(outside);
    auto file = [](const std::string& path, std::size_t size, int age) {
        std::ofstream(path) << std::string(size, 'x');
        struct timespec t[2];
        t[0].tv_sec = t[1].tv_sec = ::time(nullptr) - age;
        t[0].tv_nsec = t[1].tv_nsec = 0;
        ::utimensat(AT_FDCWD, path.c_str(), t, 0);
    };
    file(cache + "/a/b/oldest", 64 << 10, 300);
    file(cache + "/a/older", 64 << 10, 200);
    file(cache + "/newest", 64 << 10, 100);
    file(outside + "/victim", 64 << 10, 1000);
    fs::create_symlink(outside, cache + "/to-outside");
    fs::create_symlink(outside + "/victim", cache + "/victim-link");
    auto before = cache_usage(cache);
    EXPECT_EQ(before.files, 3u);
    EXPECT_GE(before.bytes, 3u * (64 << 10));
    auto after = trim_cache(cache, 2 * (64 << 10) + 4096);
    EXPECT_LE(after.bytes, 2u * (64 << 10) + 4096);
    EXPECT_FALSE(fs::exists(cache + "/a/b/oldest"));
    EXPECT_TRUE(fs::exists(cache + "/a/older"));
    EXPECT_TRUE(fs::exists(cache + "/newest"));
    EXPECT_TRUE(fs::exists(outside + "/victim")) << "a link led the trim outside the cache";
    nlohmann::json report;
    CachePolicy refuse;
    refuse.max_size = 4096;
    refuse.on_full = CachePolicy::OnFull::refuse;
    EXPECT_THROW(enforce_cache_bound(refuse, cache, true, report), Error);
    EXPECT_TRUE(fs::exists(cache + "/newest")) << "refuse removes nothing";
    CachePolicy trim;
    trim.max_size = 4096;
    enforce_cache_bound(trim, cache, false, report);
    EXPECT_EQ(report["cache"]["bytes"], 0);
    EXPECT_GT(report["cache"]["trimmed_bytes"].get<std::uint64_t>(), 0u);
    EXPECT_TRUE(fs::exists(outside + "/victim"));
}
