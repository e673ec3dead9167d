// SPDX-License-Identifier: Apache-2.0
#include "workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "cgroup.h"
#include "error.h"

namespace mcpwarden {
namespace {

// A root-owned directory that only root may write to. An existing one owned by someone else,
// or writable by others, is refused: a user who controls it could redirect our writes.
void root_dir(const std::string& path, mode_t mode) {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text("cannot create state directory " + path, errno) +
                        "; pass --state-dir with a directory root can write");
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw Error(ErrorKind::sandbox_unavailable, path + " is not a directory");
    }
    if (st.st_uid != 0 || (st.st_mode & 022)) {
        throw Error(ErrorKind::sandbox_unavailable,
                    "state directory " + path + " must be owned by root and not writable by "
                    "group or others (chown root " + path + "; chmod go-w " + path + ")");
    }
    ::chmod(path.c_str(), mode);
}

void user_dir(const std::string& path, const UserIdentity& user) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot create " + path, errno));
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw Error(ErrorKind::sandbox_unavailable, path + " is not a directory");
    }
    if (::lchown(path.c_str(), user.uid, user.gid) != 0 || ::chmod(path.c_str(), 0700) != 0) {
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot hand " + path + " to " + user.name, errno));
    }
}

// Before each pair had a uid of its own, servers ran as nobody and their cache was
// <policy>/65534 (standalone) or <policy>/65534-for-<client> (the agent). The pair's first run
// takes it over: renamed (atomic: only one pair gets it) and handed to the pair's uid. Only
// entries nobody owned change owner; a file with other hard links is left as it is (it may
// be a link to a file outside that nobody could write).
constexpr uid_t kLegacyUid = 65534;

void adopt_legacy_cache(const std::string& legacy, const std::string& cache, const UserIdentity& user) {
    struct stat st {};
    if (::lstat(cache.c_str(), &st) == 0 || ::lstat(legacy.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != kLegacyUid) {
        return;
    }
    if (::rename(legacy.c_str(), cache.c_str()) != 0) {
        spdlog::warn("could not take over the cache {}: {}", legacy, std::strerror(errno));
        return;
    }
    static thread_local const UserIdentity* owner = nullptr;
    owner = &user;
    auto fn = [](const char* p, const struct stat* sb, int type, struct FTW*) -> int {
        if (sb->st_uid != kLegacyUid) return 0;
        if (type == FTW_F && S_ISREG(sb->st_mode) && sb->st_nlink > 1) return 0;
        (void)::lchown(p, owner->uid, owner->gid);
        return 0;
    };
    if (::nftw(cache.c_str(), fn, 32, FTW_PHYS | FTW_MOUNT) != 0) {
        spdlog::warn("could not hand all of {} to {}: {}", cache, user.name, std::strerror(errno));
    }
    spdlog::info("cache {} is now {} (owned by {})", legacy, cache, user.name);
}

}  // namespace

Workspace::Workspace(const std::string& state_dir, const std::string& policy_name,
                     const UserIdentity& user, std::optional<std::uint64_t> size_bytes,
                     std::optional<uid_t> client_uid, bool own_identity) {
    root_dir(state_dir, 0755);
    root_dir(state_dir + "/cache", 0711);
    mount_point_ = state_dir + "/sandbox";
    root_dir(mount_point_, 0755);
    home_ = mount_point_ + "/home";
    tmp_ = mount_point_ + "/tmp";
    mount_options_ = "mode=0755,uid=0,gid=0";
    if (size_bytes) mount_options_ += ",size=" + std::to_string(*size_bytes);
    std::string policy_dir = state_dir + "/cache/" + policy_name;
    root_dir(policy_dir, 0711);
    cache_ = policy_dir + "/" + std::to_string(user.uid);
    std::string client = client_uid ? "-for-" + std::to_string(*client_uid) : "";
    if (own_identity) {
        adopt_legacy_cache(policy_dir + "/" + std::to_string(kLegacyUid) + client, cache_, user);
    } else {
        cache_ += client;
    }
    user_dir(cache_, user);
}

int sweep_stale_workspaces(const std::string& state_dir) {
    int removed = 0;
    std::string run = state_dir + "/run";
    DIR* d = ::opendir(run.c_str());
    if (!d) return 0;
    std::vector<std::string> stale;
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.rfind("s-", 0) == 0 && !sandbox_owner_alive(n)) stale.push_back(run + "/" + n);
    }
    ::closedir(d);
    for (const auto& path : stale) {
        remove_tree(path);
        ++removed;
    }
    return removed;
}

void remove_tree(const std::string& path) {
    if (path.empty()) return;
    auto fn = [](const char* p, const struct stat*, int type, struct FTW*) -> int {
        if (type == FTW_DP || type == FTW_D) ::rmdir(p);
        else ::unlink(p);
        return 0;
    };
    if (::nftw(path.c_str(), fn, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 && errno != ENOENT) {
        spdlog::warn("could not remove {}: {}", path, std::strerror(errno));
    }
}

}  // namespace mcpwarden
