// SPDX-License-Identifier: Apache-2.0
#include "identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "error.h"

namespace mcpwarden {
namespace {

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// FNV-1a: fixed forever, since the first candidate of an existing pair must not move.
std::uint64_t pair_hash(const std::string& policy, uid_t client) {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ull; };
    for (unsigned char c : policy) mix(c);
    mix(0);
    for (unsigned char c : std::to_string(client)) mix(c);
    return h;
}

std::string pair_key(const std::string& policy, uid_t client) {
    return policy + "@" + std::to_string(client);
}

std::string claim_text(const std::string& policy, uid_t client) {
    return policy + " " + std::to_string(client) + "\n";
}

void private_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot create " + path, errno) +
                                                        "; pass --state-dir with a directory root can write");
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
        (st.st_mode & 022)) {
        throw Error(ErrorKind::sandbox_unavailable,
                    path + " must be a directory owned by root and not writable by group or others");
    }
}

std::string read_fd_text(int fd) {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()))) > 0) {
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > 4096) break;
    }
    return out;
}

std::optional<std::uint64_t> status_uid(const std::string& status_path, bool any_of, uid_t uid) {
    std::ifstream in(status_path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Uid:", 0) != 0) continue;
        std::istringstream ids(line.substr(4));
        std::uint64_t id;
        std::optional<std::uint64_t> first;
        while (ids >> id) {
            if (!first) first = id;
            if (any_of && id == uid) return id;
        }
        return any_of ? std::nullopt : first;
    }
    return std::nullopt;
}

bool process_runs_as(uid_t uid) {
    DIR* d = ::opendir("/proc");
    if (!d) return true;  // cannot tell: keep the uid
    bool found = false;
    while (auto* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        if (status_uid(std::string("/proc/") + e->d_name + "/status", true, uid)) {
            found = true;
            break;
        }
    }
    ::closedir(d);
    return found;
}

}  // namespace

std::optional<uid_t> process_uid(pid_t pid) {
    auto id = status_uid("/proc/" + std::to_string(pid) + "/status", false, 0);
    if (!id) return std::nullopt;
    return static_cast<uid_t>(*id);
}

std::string user_name_of(uid_t uid) {
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found) return pw.pw_name;
    return "mcpwarden-" + std::to_string(uid);
}

std::string UidRange::to_string() const {
    return std::to_string(first) + "-" + std::to_string(last);
}

std::optional<UidRange> parse_uid_range(std::string_view text, std::string* why) {
    auto dash = text.find('-');
    auto first = dash == std::string_view::npos ? std::nullopt : parse_u64(text.substr(0, dash));
    auto last = dash == std::string_view::npos ? std::nullopt : parse_u64(text.substr(dash + 1));
    if (!first || !last) {
        *why = "a uid range is FIRST-LAST (whole numbers), as 1879048192-1879113727, not '" +
               std::string(text) + "'";
        return std::nullopt;
    }
    if (*last >= 4294967295ull || *first > *last) {
        *why = "the uid range " + std::string(text) + " must have FIRST <= LAST < 4294967295";
        return std::nullopt;
    }
    return UidRange{static_cast<uid_t>(*first), static_cast<uid_t>(*last)};
}

UidRange configured_identity_range(const std::string& state_dir) {
    std::string path = state_dir + "/uid-range", text;
    if (!read_file(path, text)) return kDefaultIdentityRange;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    std::string why;
    auto r = parse_uid_range(text, &why);
    if (!r) throw Error(ErrorKind::usage, path + ": " + why, {{"file", path}});
    return *r;
}

std::vector<SubidRange> read_subid_ranges(const std::vector<std::string>& files) {
    std::vector<SubidRange> out;
    for (const auto& file : files) {
        std::ifstream in(file);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            auto a = line.find(':');
            auto b = a == std::string::npos ? a : line.find(':', a + 1);
            if (b == std::string::npos) continue;
            auto first = parse_u64(std::string_view(line).substr(a + 1, b - a - 1));
            auto count = parse_u64(std::string_view(line).substr(b + 1));
            if (!first || !count || *count == 0 || *first > 4294967294ull) continue;
            std::uint64_t last = std::min<std::uint64_t>(*first + *count - 1, 4294967294ull);
            out.push_back({file, line.substr(0, a), {static_cast<uid_t>(*first), static_cast<uid_t>(last)}});
        }
    }
    return out;
}

std::string identity_range_problem(const UidRange& range, const std::vector<SubidRange>& subids) {
    struct Reserved {
        UidRange r;
        const char* what;
    };
    static const Reserved reserved[] = {
        {{0, 999}, "root and the system users (0-999)"},
        {{61184, 65519}, "systemd's DynamicUser range (61184-65519)"},
        {{65534, 65535}, "nobody and the 16-bit -1 (65534-65535)"},
        {{524288, 1879048191}, "systemd-nspawn's container range (524288-1879048191)"},
        {{4294967295u, 4294967295u}, "the 32-bit -1 (4294967295)"},
    };
    for (const auto& r : reserved) {
        if (range.overlaps(r.r)) {
            return "the uid range " + range.to_string() + " overlaps " + r.what +
                   "; choose one outside it (default " + kDefaultIdentityRange.to_string() + ")";
        }
    }
    for (const auto& s : subids) {
        if (range.overlaps(s.range)) {
            return "the uid range " + range.to_string() + " overlaps " + s.owner + "'s range " +
                   s.range.to_string() + " in " + s.file +
                   " (user namespaces map it); choose one outside it";
        }
    }
    return "";
}

bool uid_in_use_on_host(uid_t uid) {
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* pr = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &pr) != 0 || pr) return true;
    struct group gr {};
    struct group* gres = nullptr;
    if (::getgrgid_r(static_cast<gid_t>(uid), &gr, buf.data(), buf.size(), &gres) != 0 || gres) return true;
    // SysV IPC objects survive their owner: a new owner of the uid would get them.
    struct Table {
        const char* file;
        std::initializer_list<int> columns;  // uid, gid, cuid, cgid
    };
    for (const Table& t : {Table{"/proc/sysvipc/shm", {7, 8, 9, 10}}, Table{"/proc/sysvipc/msg", {7, 8, 9, 10}},
                           Table{"/proc/sysvipc/sem", {4, 5, 6, 7}}}) {
        std::ifstream in(t.file);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream cols(line);
            std::vector<std::uint64_t> v;
            std::uint64_t x;
            while (cols >> x) v.push_back(x);
            for (int c : t.columns) {
                if (static_cast<size_t>(c) < v.size() && v[static_cast<size_t>(c)] == uid) return true;
            }
        }
    }
    return false;
}

std::optional<FixedAccount> check_fixed_account(const std::string& value, std::string* why) {
    why->clear();
    bool numeric = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    if (!value.empty() && value[0] == '-') {
        *why = "user '" + value + "' is not a valid uid (-1 is \"no change\" to setresuid: the server "
               "would keep running as root)";
        return std::nullopt;
    }
    if (value.empty() || (!numeric && value.find_first_of(":/\n ") != std::string::npos)) {
        *why = "user '" + value + "' is not a user name or a numeric uid";
        return std::nullopt;
    }
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* found = nullptr;
    FixedAccount a;
    if (numeric) {
        auto id = parse_u64(value);
        if (!id || *id >= 4294967295ull) {
            *why = "user '" + value + "' is not a valid uid (uids go up to 4294967294; 4294967295 is -1, "
                   "which setresuid takes as \"no change\": the server would keep running as root)";
            return std::nullopt;
        }
        a.uid = static_cast<uid_t>(*id);
        a.gid = static_cast<gid_t>(*id);
        a.name = value;
        ::getpwuid_r(a.uid, &pw, buf.data(), buf.size(), &found);
    } else {
        ::getpwnam_r(value.c_str(), &pw, buf.data(), buf.size(), &found);
        if (!found) return std::nullopt;
    }
    if (found) {
        a = {pw.pw_name, pw.pw_uid, pw.pw_gid, true};
    }
    if (a.uid == 0 || a.gid == 0) {
        *why = "refusing to run the server as root (user '" + value + "'): it could leave its cgroup "
               "and remove its own egress policy; leave user out (each sandbox gets a uid of its own)";
        return std::nullopt;
    }
    if (a.gid == static_cast<gid_t>(-1)) {
        *why = "user '" + value + "' has gid 4294967295 (-1), which setresgid takes as \"no change\"";
        return std::nullopt;
    }
    if (found) {
        std::string shell = pw.pw_shell ? pw.pw_shell : "";
        std::string base = shell.substr(shell.find_last_of('/') == std::string::npos ? 0 : shell.find_last_of('/') + 1);
        if (base != "nologin" && base != "false") {
            *why = "user '" + value + "' has a login shell (" + (shell.empty() ? "/bin/sh" : shell) +
                   "): it is a person's or an administrator's account, and a server running as it "
                   "could use everything that account owns; leave user out (each sandbox gets a uid "
                   "of its own) or name a service account with /usr/sbin/nologin";
            return std::nullopt;
        }
        std::string home = pw.pw_dir ? pw.pw_dir : "";
        if (home == "/home" || home.rfind("/home/", 0) == 0) {
            *why = "user '" + value + "' has its home under /home (" + home +
                   "): a person's account; leave user out or name a service account";
            return std::nullopt;
        }
    }
    return a;
}

IdentityStore::IdentityStore(std::string state_dir, UidRange range, std::vector<SubidRange> subids,
                             UidInUse in_use)
    : dir_(state_dir + "/identity"), uids_(dir_ + "/uids"), pairs_(dir_ + "/pairs"), range_(range),
      in_use_(std::move(in_use)) {
    if (auto why = identity_range_problem(range, subids); !why.empty()) {
        throw Error(ErrorKind::usage, why, {{"uid_range", range.to_string()}});
    }
    private_dir(state_dir, 0755);
    private_dir(dir_, 0700);
    private_dir(uids_, 0700);
    private_dir(pairs_, 0700);
}

std::optional<uid_t> IdentityStore::lookup(const std::string& policy, uid_t client) const {
    char target[32];
    ssize_t n = ::readlink((pairs_ + "/" + pair_key(policy, client)).c_str(), target, sizeof target - 1);
    if (n <= 0) return std::nullopt;
    auto uid = parse_u64(std::string_view(target, static_cast<size_t>(n)));
    if (!uid || *uid >= 4294967295ull) return std::nullopt;
    return static_cast<uid_t>(*uid);
}

IdentityLease IdentityStore::acquire(const std::string& policy, uid_t client) {
    const std::string key = pair_key(policy, client), claim = claim_text(policy, client);
    for (int attempt = 0; attempt < 8; ++attempt) {
        if (auto uid = lookup(policy, client)) {
            std::string path = uids_ + "/" + std::to_string(*uid);
            UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
            if (!fd) {
                if (errno == ENOENT) {  // freed by a reclaimer between the two lookups
                    ::unlink((pairs_ + "/" + key).c_str());
                    continue;
                }
                throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot open " + path, errno));
            }
            // Blocks only while a reclaimer holds it; after that the claim may be gone.
            while (::flock(fd.get(), LOCK_SH) != 0 && errno == EINTR) {
            }
            struct stat st {};
            if (::fstat(fd.get(), &st) != 0 || st.st_nlink == 0) continue;
            if (read_fd_text(fd.get()) != claim) {
                throw Error(ErrorKind::sandbox_unavailable,
                            "the identity store " + dir_ + " is inconsistent: " + key + " points to uid " +
                                std::to_string(*uid) + ", which " + path + " gives another pair; remove both to start over");
            }
            if (in_use_(*uid)) {
                throw Error(ErrorKind::sandbox_unavailable,
                            "uid " + std::to_string(*uid) + " of " + key +
                                " now belongs to a host user or group (or owns SysV IPC objects); "
                                "remove that, or remove " + pairs_ + "/" + key + " to give the pair a new uid "
                                "(its cache is then rebuilt)");
            }
            return {*uid, static_cast<gid_t>(*uid), true, std::move(fd)};
        }
        std::uint64_t size = range_.size();
        std::uint64_t start = pair_hash(policy, client) % size;
        bool raced = false;
        for (std::uint64_t i = 0; i < size && !raced; ++i) {
            uid_t cand = static_cast<uid_t>(range_.first + (start + i) % size);
            std::string path = uids_ + "/" + std::to_string(cand);
            if (::access(path.c_str(), F_OK) == 0 || in_use_(cand)) continue;
            UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
            if (!fd) {
                if (errno == EEXIST) continue;
                throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot create " + path, errno));
            }
            if (!write_all(fd.get(), claim.data(), claim.size()) || ::fsync(fd.get()) != 0 ||
                ::flock(fd.get(), LOCK_SH) != 0) {
                int err = errno;
                ::unlink(path.c_str());
                throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot write " + path, err));
            }
            if (::symlink(std::to_string(cand).c_str(), (pairs_ + "/" + key).c_str()) == 0) {
                return {cand, static_cast<gid_t>(cand), false, std::move(fd)};
            }
            int err = errno;
            ::unlink(path.c_str());
            if (err != EEXIST) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot assign " + key, err));
            raced = true;  // another process assigned the pair meanwhile: take its uid
        }
        if (!raced) {
            throw Error(ErrorKind::sandbox_unavailable,
                        "no free uid left in the identity range " + range_.to_string() +
                            " (one per policy and client); widen it (uid_range) or reclaim unused ones");
        }
    }
    throw Error(ErrorKind::sandbox_unavailable, "could not claim a uid for " + key + ": the identity store keeps changing");
}

std::vector<uid_t> IdentityStore::reclaim(
    const std::function<bool(const std::string& policy, uid_t client, uid_t uid)>& keep) {
    std::vector<uid_t> freed;
    DIR* d = ::opendir(uids_.c_str());
    if (!d) return freed;
    std::vector<std::string> names;
    while (auto* e = ::readdir(d)) {
        if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    ::closedir(d);
    for (const auto& name : names) {
        auto uid64 = parse_u64(name);
        if (!uid64 || *uid64 >= 4294967295ull) continue;
        uid_t uid = static_cast<uid_t>(*uid64);
        std::string path = uids_ + "/" + name;
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
        if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // in use
        std::string text = read_fd_text(fd.get());
        auto space = text.find(' ');
        std::string policy = space == std::string::npos ? "" : text.substr(0, space);
        // (A plain value, not the optional: GCC 12 cannot see it set on every path it is read.)
        uid_t client = 0;
        bool has_client = false;
        if (space != std::string::npos) {
            if (auto c = parse_u64(std::string_view(text).substr(space + 1, text.size() - space - 2))) {
                client = static_cast<uid_t>(*c);
                has_client = true;
            }
        }
        bool assigned = has_client && lookup(policy, client) == uid;
        // An unassigned claim is a crash between claim and assignment: always freed.
        if (assigned && keep(policy, client, uid)) continue;
        // A server outliving its agent holds no lock, but still runs as the uid.
        if (process_runs_as(uid)) continue;
        if (assigned) ::unlink((pairs_ + "/" + pair_key(policy, client)).c_str());
        ::unlink(path.c_str());
        freed.push_back(uid);
    }
    return freed;
}

}  // namespace mcpwarden
