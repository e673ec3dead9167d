// SPDX-License-Identifier: Apache-2.0
// A host uid/gid of its own for every (policy, client) pair, the way systemd's DynamicUser
// picks one, but stable: the same pair gets the same uid on every run, so its persistent cache
// stays its own, and two different pairs never share one. Kernel DAC then keeps sandboxes
// apart: kill(2) needs the same uid, the caches are 0700.
//
// Under the state directory:
//   <state>/identity                 root 0700
//     uids/<uid>                     root 0600  "<policy> <client uid>\n": the claim (O_EXCL)
//                                               and the lock (flock LOCK_SH while in use)
//     pairs/<policy>@<client uid>    symlink -> "<uid>": the pair's assignment
//
// No passwd entry is made: the sandbox's user name is "mcpwarden-<uid>".
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd.h"

namespace mcpwarden {

// [first, last], inclusive.
struct UidRange {
    uid_t first = 0;
    uid_t last = 0;
    std::uint64_t size() const { return std::uint64_t(last) - first + 1; }
    bool contains(uid_t u) const { return u >= first && u <= last; }
    bool overlaps(const UidRange& o) const { return first <= o.last && o.first <= last; }
    std::string to_string() const;  // "FIRST-LAST"
};

// 0x70000000 + 64Ki: above systemd-nspawn's container ranges (524288-1879048191), below
// systemd's foreign range (2147352576+) and 2^31 (tools that take a uid as signed).
inline constexpr UidRange kDefaultIdentityRange{1879048192u, 1879048192u + 65535u};

// "FIRST-LAST". nullopt with *why otherwise.
std::optional<UidRange> parse_uid_range(std::string_view text, std::string* why);

// The range set for a state directory: the file <state>/uid-range ("FIRST-LAST"), or
// kDefaultIdentityRange without it. Throws Error(usage) for a file that does not parse.
UidRange configured_identity_range(const std::string& state_dir);

// A range of /etc/subuid or /etc/subgid ("owner:first:count").
struct SubidRange {
    std::string file;
    std::string owner;
    UidRange range;
};
// Unreadable or absent files give nothing; malformed lines are skipped.
std::vector<SubidRange> read_subid_ranges(const std::vector<std::string>& files = {"/etc/subuid", "/etc/subgid"});

// Why `range` may not hold sandbox identities, or empty when it may: uid 0, 65534/65535,
// 4294967295, systemd's DynamicUser 61184-65519, systemd-nspawn's 524288-1879048191, or any
// range in `subids`.
std::string identity_range_problem(const UidRange& range, const std::vector<SubidRange>& subids);

// A uid a sandbox may not take although it is in the range: NSS resolves it (as a user or a
// group) or it owns SysV IPC objects (systemd's pick_uid refuses the same). Tests replace it.
using UidInUse = std::function<bool(uid_t)>;
bool uid_in_use_on_host(uid_t uid);

// The uid's claim held open with a shared flock for as long as this object lives: a reclaimer
// (IdentityStore::reclaim) never takes a uid whose lock is held.
struct IdentityLease {
    uid_t uid = 0;
    gid_t gid = 0;
    bool reused = false;  // the pair had this uid before
    UniqueFd lock;
    std::string name() const { return "mcpwarden-" + std::to_string(uid); }
};

// The real uid of a running process (/proc/PID/status), nullopt when it is gone.
std::optional<uid_t> process_uid(pid_t pid);
// The account's name, or "mcpwarden-<uid>" for a uid without one (a sandbox's own).
std::string user_name_of(uid_t uid);

// A fixed account chosen by `user:` or `--user` instead of the per-pair identity.
struct FixedAccount {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    bool known = false;  // NSS has it (shell and home are its); a bare number need not
};
// `value` is a user name or a numeric uid. nullopt with *why when the value cannot name a
// server's account: not a name or a uid below 4294967295 (-1 is "no change" to setresuid:
// the server would stay root), root (uid or gid 0), an account with a login shell (anything
// but nologin/false) or a home under /home (a person's: the server would act as them).
// An unknown name gives nullopt with *why empty.
std::optional<FixedAccount> check_fixed_account(const std::string& value, std::string* why);

class IdentityStore {
public:
    // Throws Error(usage) for a range identity_range_problem refuses.
    IdentityStore(std::string state_dir, UidRange range = kDefaultIdentityRange,
                  std::vector<SubidRange> subids = read_subid_ranges(),
                  UidInUse in_use = uid_in_use_on_host);

    // The pair's uid, claimed on first use: the hash of the pair is the first candidate, then
    // the next ones in the range. Safe against concurrent callers in other processes (claims
    // are O_EXCL files, the pair's assignment an atomic symlink). Throws
    // Error(sandbox_unavailable) when the range is full or the pair's uid became unusable.
    IdentityLease acquire(const std::string& policy, uid_t client);

    // The pair's uid if it has one (no claim, no lock).
    std::optional<uid_t> lookup(const std::string& policy, uid_t client) const;

    // Gives up the assignments `keep` does not want kept, skipping every uid whose lock is held
    // or that a process runs as. Returns the uids freed. The pair's cache is left for the
    // caller to remove: a uid freed here may go to another pair.
    std::vector<uid_t> reclaim(const std::function<bool(const std::string& policy, uid_t client, uid_t uid)>& keep);

    const UidRange& range() const { return range_; }

private:
    std::string dir_, uids_, pairs_;
    UidRange range_;
    UidInUse in_use_;
};

}  // namespace mcpwarden
