#include "workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

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

}  // namespace

Workspace::Workspace(const std::string& state_dir, const std::string& policy_name,
                     const UserIdentity& user, std::optional<std::uint64_t> size_bytes,
                     std::optional<uid_t> client_uid) {
    root_dir(state_dir, 0755);
    root_dir(state_dir + "/cache", 0711);
    mount_point_ = state_dir + "/sandbox";
    root_dir(mount_point_, 0755);
    home_ = mount_point_ + "/home";
    tmp_ = mount_point_ + "/tmp";
    mount_options_ = "mode=0755,uid=0,gid=0";
    if (size_bytes) mount_options_ += ",size=" + std::to_string(*size_bytes);
    root_dir(state_dir + "/cache/" + policy_name, 0711);
    cache_ = state_dir + "/cache/" + policy_name + "/" + std::to_string(user.uid);
    if (client_uid) cache_ += "-for-" + std::to_string(*client_uid);
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
