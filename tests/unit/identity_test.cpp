// SPDX-License-Identifier: Apache-2.0
// The per-(policy, client) uid: stable per pair, never shared between pairs, from a range that
// collides with nobody else's, locked while in use.
#include <gtest/gtest.h>

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <set>

#include "error.h"
#include "identity.h"
#include "process.h"
#include "workspace.h"

using namespace mcpwarden;

namespace {

struct TempState {
    std::string root, state;
    TempState() {
        char tmpl[] = "/tmp/mcpwarden-id-XXXXXX";
        root = ::mkdtemp(tmpl);
        state = root + "/state";
    }
    ~TempState() { std::filesystem::remove_all(root); }
};

bool never_in_use(uid_t) { return false; }

// A small range far from the host's users, so the tests' claims cannot meet real ones.
constexpr UidRange kSmall{1879048192u, 1879048192u + 7u};

}  // namespace

TEST(Identity, TheSamePairGetsTheSameUidEveryTime) {
    TempState t;
    uid_t first;
    {
        IdentityStore store(t.state, kDefaultIdentityRange, {}, never_in_use);
        auto a = store.acquire("github", 1000);
        EXPECT_FALSE(a.reused);
        EXPECT_TRUE(kDefaultIdentityRange.contains(a.uid));
        EXPECT_EQ(a.gid, a.uid);
        EXPECT_EQ(a.name(), "mcpwarden-" + std::to_string(a.uid));
        first = a.uid;
    }
    // A new store (a later run, another process) finds the same assignment.
    IdentityStore again(t.state, kDefaultIdentityRange, {}, never_in_use);
    auto b = again.acquire("github", 1000);
    EXPECT_TRUE(b.reused);
    EXPECT_EQ(b.uid, first);
    EXPECT_EQ(again.lookup("github", 1000), first);
    // Two sandboxes of one pair at once share it.
    auto c = again.acquire("github", 1000);
    EXPECT_EQ(c.uid, first);
}

TEST(Identity, DifferentPairsNeverShareAUid) {
    TempState t;
    IdentityStore store(t.state, kSmall, {}, never_in_use);
    std::set<uid_t> seen;
    std::vector<IdentityLease> leases;
    // Eight pairs fill the eight uids: every hash collision is probed past.
    for (const auto& [policy, client] : std::vector<std::pair<std::string, uid_t>>{
             {"github", 1000}, {"github", 1001}, {"slack", 1000}, {"slack", 1001},
             {"fs", 0}, {"fs", 1000}, {"web", 0}, {"web", 1}}) {
        leases.push_back(store.acquire(policy, client));
        EXPECT_TRUE(seen.insert(leases.back().uid).second) << policy << "@" << client << " got a shared uid";
    }
    EXPECT_EQ(seen.size(), 8u);
    try {
        store.acquire("ninth", 1000);
        ADD_FAILURE() << "a ninth pair got a uid from a range of eight";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::sandbox_unavailable);
        EXPECT_NE(std::string(e.what()).find("no free uid"), std::string::npos) << e.what();
    }
    // The assignments are stable after the range filled up.
    EXPECT_EQ(store.acquire("slack", 1001).uid, leases[3].uid);
}

TEST(Identity, ACandidateTheHostUsesIsSkipped) {
    TempState t;
    // Every uid but the last is "resolved by NSS or owns SysV IPC": the probe goes past them.
    IdentityStore store(t.state, kSmall, {}, [](uid_t u) { return u != kSmall.last; });
    EXPECT_EQ(store.acquire("github", 1000).uid, kSmall.last);
    // The host's real check: root resolves, a uid of the default range does not.
    EXPECT_TRUE(uid_in_use_on_host(0));
    EXPECT_FALSE(uid_in_use_on_host(kDefaultIdentityRange.last));
}

TEST(Identity, AUidThatLaterResolvesIsRefusedNotShared) {
    TempState t;
    uid_t taken;
    {
        IdentityStore store(t.state, kSmall, {}, never_in_use);
        taken = store.acquire("github", 1000).uid;
    }
    IdentityStore store(t.state, kSmall, {}, [taken](uid_t u) { return u == taken; });
    EXPECT_THROW(store.acquire("github", 1000), Error);
}

TEST(Identity, RangesOfOthersAreRefused) {
    std::vector<SubidRange> subids{{"/etc/subuid", "alice", {100000, 165535}},
                                   {"/etc/subgid", "containers", {2147483647u, 4294967294u}}};
    EXPECT_EQ(identity_range_problem(kDefaultIdentityRange, subids), "");
    for (const auto& [range, needle] : std::vector<std::pair<UidRange, std::string>>{
             {{0, 10}, "root"},
             {{61184, 61200}, "DynamicUser"},
             {{65000, 65534}, "DynamicUser"},
             {{65534, 65534}, "nobody"},
             {{600000, 700000}, "nspawn"},
             {{165000, 166000}, "alice's range 100000-165535 in /etc/subuid"},
             {{3000000000u, 3000000100u}, "containers"},
             {{4294967295u, 4294967295u}, "-1"}}) {
        auto why = identity_range_problem(range, subids);
        EXPECT_NE(why.find(needle), std::string::npos) << range.to_string() << ": " << why;
    }
    TempState t;
    try {
        IdentityStore store(t.state, {100, 200}, {}, never_in_use);
        ADD_FAILURE() << "a range with system uids was taken";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::usage);
    }
    EXPECT_THROW(IdentityStore(t.state, {150000, 150010}, subids, never_in_use), Error);
}

TEST(Identity, SubidFilesAreRead) {
    TempState t;
    std::filesystem::create_directories(t.root);
    std::string file = t.root + "/subuid";
    {
        std::ofstream out(file);
        out << "# comment\nalice:100000:65536\nbroken line\ncontainers:2147483647:2147483648\n";
    }
    auto ranges = read_subid_ranges({file, t.root + "/absent"});
    ASSERT_EQ(ranges.size(), 2u);
    EXPECT_EQ(ranges[0].owner, "alice");
    EXPECT_EQ(ranges[0].range.to_string(), "100000-165535");
    EXPECT_EQ(ranges[1].range.to_string(), "2147483647-4294967294");
}

TEST(Identity, RangeSyntax) {
    std::string why;
    auto r = parse_uid_range("1879048192-1879113727", &why);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->size(), 65536u);
    for (const char* bad : {"", "5", "10-5", "a-b", "1-4294967295", "1-99999999999", "-1-5", "1 - 5"}) {
        EXPECT_FALSE(parse_uid_range(bad, &why)) << bad;
        EXPECT_FALSE(why.empty());
    }
    TempState t;
    std::filesystem::create_directories(t.state);
    EXPECT_EQ(configured_identity_range(t.state).to_string(), kDefaultIdentityRange.to_string());
    { std::ofstream(t.state + "/uid-range") << "1879048192-1879048200\n"; }
    EXPECT_EQ(configured_identity_range(t.state).to_string(), "1879048192-1879048200");
    { std::ofstream(t.state + "/uid-range") << "nonsense\n"; }
    EXPECT_THROW(configured_identity_range(t.state), Error);
}

TEST(Identity, ALockedUidIsNeverReclaimed) {
    TempState t;
    IdentityStore store(t.state, kSmall, {}, never_in_use);
    auto running = store.acquire("github", 1000);
    uid_t idle;
    {
        idle = store.acquire("slack", 1000).uid;
    }  // its sandbox ended: the lock is released
    auto all = [](const std::string&, uid_t, uid_t) { return false; };
    auto freed = store.reclaim(all);
    EXPECT_EQ(freed, std::vector<uid_t>{idle});
    EXPECT_EQ(store.lookup("github", 1000), running.uid);
    EXPECT_FALSE(store.lookup("slack", 1000));
    // The running sandbox's uid stays its own: no other pair gets it while it is locked.
    for (uid_t c = 0; c < 6; ++c) EXPECT_NE(store.acquire("other", c).uid, running.uid);
    running.lock.reset();
    EXPECT_EQ(store.reclaim([](const std::string& p, uid_t, uid_t) { return p == "other"; }),
              std::vector<uid_t>{running.uid});
}

TEST(Identity, ASharedLockBlocksAReclaimButNotAnotherRunOfThePair) {
    TempState t;
    IdentityStore store(t.state, kSmall, {}, never_in_use);
    uid_t before;
    { before = store.acquire("github", 1000).uid; }
    // Another process holding the claim as a running sandbox does.
    std::string claim = t.state + "/identity/uids/" + std::to_string(before);
    int fd = ::open(claim.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_SH | LOCK_NB), 0);
    // A held shared lock (a running sandbox) blocks a reclaim, but not another user.
    EXPECT_TRUE(store.reclaim([](const std::string&, uid_t, uid_t) { return false; }).empty());
    EXPECT_EQ(store.acquire("github", 1000).uid, before);
    ::close(fd);
}

TEST(Identity, FixedAccountsThatWouldBeRootOrAPersonAreRefused) {
    std::string why;
    for (const char* bad : {"0", "root", "4294967295", "4294967296", "18446744073709551616",
                            "99999999999999999999999", "-1", "", "a:b"}) {
        EXPECT_FALSE(check_fixed_account(bad, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
        EXPECT_THROW(resolve_user(bad), Error) << bad;
    }
    EXPECT_TRUE(check_fixed_account("nobody", &why)) << why;
    EXPECT_TRUE(check_fixed_account("4294967294", &why)) << why;
    // An unknown name: not this check's to refuse (resolve_user says it is unknown).
    EXPECT_FALSE(check_fixed_account("no-such-user-xyz", &why));
    EXPECT_TRUE(why.empty());
    try {
        resolve_user("4294967295");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::usage);
        EXPECT_NE(std::string(e.what()).find("no change"), std::string::npos) << e.what();
    }
}

TEST(Identity, CacheIsThePairsOwnAndTakesOverTheOldNobodyCache) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (the directories are handed to the sandbox user)";
    TempState t;
    IdentityStore store(t.state, kSmall, {}, never_in_use);
    auto a = store.acquire("github", 1000);
    // What an earlier version left: the agent's cache for client 1000, as nobody.
    std::string legacy = t.state + "/cache/github/65534-for-1000";
    std::filesystem::create_directories(legacy + "/npm");
    { std::ofstream(legacy + "/npm/package") << "x"; }
    for (const auto& p : {legacy, legacy + "/npm", legacy + "/npm/package"}) ASSERT_EQ(::chown(p.c_str(), 65534, 65534), 0);
    ::chmod((t.state + "/cache").c_str(), 0711);
    ::chmod((t.state + "/cache/github").c_str(), 0711);
    UserIdentity user{a.name(), a.uid, a.gid};
    Workspace ws(t.state, "github", user, std::nullopt, 1000, true);
    EXPECT_EQ(ws.cache(), t.state + "/cache/github/" + std::to_string(a.uid));
    struct stat st {};
    ASSERT_EQ(::lstat((ws.cache() + "/npm/package").c_str(), &st), 0) << "the old cache was not taken over";
    EXPECT_EQ(st.st_uid, a.uid);
    ASSERT_EQ(::lstat(ws.cache().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, a.uid);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_NE(::access(legacy.c_str(), F_OK), 0);
    // The parents stay root's and not writable by any sandbox.
    for (const auto& p : {t.state + "/cache", t.state + "/cache/github"}) {
        ASSERT_EQ(::lstat(p.c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 0u);
        EXPECT_EQ(st.st_mode & 0022, 0u);
    }
}
