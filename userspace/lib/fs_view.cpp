// SPDX-License-Identifier: Apache-2.0
#include "fs_view.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "error.h"
#include "sandbox.h"

#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

namespace mcpwarden {
namespace {

// The mount API as raw system calls: the child calls them between clone and execve, and
// glibc's wrappers are not guaranteed to be there (or free of errno games) on every libc.
int sys_open_tree(int dfd, const char* path, unsigned flags) {
    return static_cast<int>(::syscall(SYS_open_tree, dfd, path, flags));
}
int sys_move_mount(int from_dfd, const char* from, int to_dfd, const char* to, unsigned flags) {
    return static_cast<int>(::syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags));
}
int sys_mount_setattr(int dfd, const char* path, unsigned flags, std::uint64_t set, std::uint64_t clear,
                      std::uint64_t propagation = 0) {
    struct mount_attr attr {};
    attr.attr_set = set;
    attr.attr_clr = clear;
    attr.propagation = propagation;
    return static_cast<int>(::syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof attr));
}

bool inside(const std::string& path, const std::string& dir) {
    if (dir == "/") return true;
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                           path[dir.size()] == '/');
}

std::size_t depth(const std::string& path) {
    return path == "/" ? 0 : static_cast<std::size_t>(std::count(path.begin(), path.end(), '/'));
}

std::string real_path(const std::string& path) {
    char* real = ::realpath(path.c_str(), nullptr);
    std::string out = real ? real : "";
    ::free(real);
    return out;
}

bool is_dir(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

[[noreturn]] void refuse(const std::string& what) {
    throw Error(ErrorKind::sandbox_unavailable,
                what + "; refusing to run the server with a different filesystem view than asked",
                {{"stage", "filesystem view"}});
}

// One mount of the view before it becomes ops: sorted by depth so that a layer is always
// mounted after the layers it lies in (a bind under /home after the tmpfs hiding /home).
struct Layer {
    std::string path;
    FsView::Op op;
    FsVerdict::Access access;
    std::string why;
    bool seal = false;  // made read-only once everything under it is mounted
};

class Planner {
public:
    explicit Planner(FsView& view) : view_(view) {}

    void tmpfs(const std::string& path, const std::string& options, unsigned long flags,
               FsVerdict::Access access, const std::string& why, bool seal) {
        FsView::Op op{FsView::Kind::tmpfs, path, options, flags};
        layers_.push_back({path, op, access, why, seal});
    }

    void hide(const std::string& path, const std::string& why) {
        if (is_dir(path)) {
            tmpfs(path, "mode=0755,size=64k,nr_inodes=1024", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  FsVerdict::hidden, why, true);
        } else {
            // A file is covered by the host's /dev/null, read-only and without device access:
            // opening it fails.
            bind_clone("/dev/null", path, false, false,
                       MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                       FsVerdict::hidden, why);
        }
    }

    // A detached copy of `source` (with its submounts when `recursive`), attached at `target`
    // in the child. Opened here, before any layer exists, so nothing of the view can hide it.
    void bind_clone(const std::string& source, const std::string& target, bool dir, bool recursive,
                    std::uint64_t attrs, FsVerdict::Access access, const std::string& why) {
        unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW;
        if (recursive) flags |= AT_RECURSIVE;
        UniqueFd fd(sys_open_tree(AT_FDCWD, source.c_str(), flags));
        if (!fd) refuse(errno_text("cannot prepare " + source + " for the sandbox (open_tree)", errno));
        // Private: neither the host's later mounts there nor the view's own (a hide inside a
        // read_write directory) cross between the two.
        if (sys_mount_setattr(fd.get(), "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), attrs, 0,
                              MS_PRIVATE) != 0)
            refuse(errno_text("cannot set the mount options of " + source + " (mount_setattr)", errno));
        FsView::Op op{FsView::Kind::bind, target};
        op.fd = fd.get();
        op.file = !dir;
        view_.fds.push_back(std::move(fd));
        layers_.push_back({target, op, access, why, false});
    }

    // A place the server may write beneath: its Landlock domain allows writes there only.
    void writable(const std::string& path) { view_.writable.push_back(path); }

    void add(const std::string& path, FsView::Op op) {
        layers_.push_back({path, std::move(op), FsVerdict::read_only, "", false});
    }

    void finish(bool fresh_proc_possible) {
        std::stable_sort(layers_.begin(), layers_.end(),
                         [](const Layer& a, const Layer& b) { return depth(a.path) < depth(b.path); });
        for (const auto& l : layers_) {
            view_.ops.push_back(l.op);
            if (!l.why.empty()) view_.layers.push_back({l.path, l.access, l.why});
        }
        for (const auto& l : layers_) {
            if (l.seal) view_.ops.push_back({FsView::Kind::seal, l.path});
        }
        if (fresh_proc_possible) view_.ops.push_back({FsView::Kind::proc, "/proc"});
    }

private:
    FsView& view_;
    std::vector<Layer> layers_;
};

// A path of the policy's filesystem section, checked on the host.
std::string policy_source(const std::string& path, const char* list, const std::vector<std::string>& reserved) {
    if (!exists(path)) {
        refuse("filesystem." + std::string(list) + " path " + path +
               " does not exist on the host; create it or remove it from the policy");
    }
    std::string real = real_path(path);
    if (real.empty()) refuse(errno_text("cannot resolve filesystem." + std::string(list) + " path " + path, errno));
    if (real != path) {
        refuse("filesystem." + std::string(list) + " path " + path + " goes through a symbolic link (to " + real +
               "); name " + real + " in the policy");
    }
    if (real == "/") refuse("filesystem." + std::string(list) + " cannot be /: the host's root is already read-only");
    for (const auto& r : reserved) {
        if (inside(real, r)) {
            refuse("filesystem." + std::string(list) + " path " + path + " lies in " + r +
                   ", which holds mcpwarden's own state and every sandbox's cache; no policy may open it");
        }
    }
    return real;
}

}  // namespace

std::unique_ptr<FsView> plan_fs_view(const FsViewRequest& r) {
    auto view = std::make_unique<FsView>();
    Planner p(*view);
    view->ops.push_back({FsView::Kind::slave_root, "/"});
    view->ops.push_back({FsView::Kind::read_only_root, "/"});
    struct statfs proc {};
    bool host_proc = ::statfs("/proc", &proc) == 0 && proc.f_type == PROC_SUPER_MAGIC;
    // The host's /proc stays writable where the kernel allows it (/proc/self/oom_score_adj...).
    if (host_proc) view->ops.push_back({FsView::Kind::writable, "/proc"});

    std::string state = real_path(r.state_dir);
    if (state.empty()) refuse(errno_text("cannot resolve the state directory " + r.state_dir, errno));
    std::vector<std::string> reserved{state};
    std::string default_state = real_path(RunOptions{}.state_dir);
    if (!default_state.empty() && default_state != state) reserved.push_back(default_state);
    if (is_dir("/etc/mcpwarden")) reserved.push_back(real_path("/etc/mcpwarden"));

    // Hidden: the users' homes, the daemons' sockets, mcpwarden's configuration and state.
    for (const char* dir : {"/home", "/root", "/run", "/var/run"}) {
        struct stat st {};
        if (::lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // absent, or a link to /run
        p.hide(dir, "an empty tmpfs there");
    }
    for (const auto& dir : reserved) p.hide(dir, "mcpwarden's configuration and state");

    // The host's content there is out of sight; what the server writes is its own.
    const std::string kPrivate = "the sandbox's own empty tmpfs";
    std::string tmp_options = "mode=1777";
    if (r.tmpfs_size) tmp_options += ",size=" + std::to_string(*r.tmpfs_size);
    for (const char* dir : {"/tmp", "/var/tmp"}) {
        if (!is_dir(dir)) continue;
        p.tmpfs(dir, tmp_options, MS_NOSUID | MS_NODEV, FsVerdict::hidden, kPrivate, false);
        p.writable(dir);
    }
    // A minimal /dev: the host's own nodes for what every program expects, nothing else.
    p.tmpfs("/dev", "mode=0755,size=64k,nr_inodes=64", MS_NOSUID | MS_NODEV | MS_NOEXEC, FsVerdict::hidden,
            "minimal /dev", true);
    std::vector<std::string> nodes{"null", "zero", "full", "random", "urandom"};
    if (r.filesystem.dev_tty) {
        // Asked for by the policy: without it on the host the run would have a different /dev.
        struct stat st {};
        if (::stat("/dev/tty", &st) != 0 || !S_ISCHR(st.st_mode))
            refuse("filesystem.dev_tty: the host has no /dev/tty device to bind");
        nodes.push_back("tty");
    }
    for (const auto& node : nodes) {
        std::string path = "/dev/" + node;
        p.bind_clone(path, path, false, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, FsVerdict::read_write,
                     node == "tty" ? "the host's /dev/tty (filesystem.dev_tty)" : "the host's device node");
        p.writable(path);
    }
    p.tmpfs("/dev/shm", tmp_options, MS_NOSUID | MS_NODEV, FsVerdict::hidden, kPrivate, false);
    p.writable("/dev/shm");
    for (auto [link, to] : {std::pair{"/dev/fd", "/proc/self/fd"}, std::pair{"/dev/stdin", "/proc/self/fd/0"},
                            std::pair{"/dev/stdout", "/proc/self/fd/1"}, std::pair{"/dev/stderr", "/proc/self/fd/2"}}) {
        FsView::Op op{FsView::Kind::symlink, link, to};
        p.add(link, op);
    }

    // The sandbox's own part of the state directory.
    p.tmpfs(r.workspace_mount, r.workspace_options, MS_NOSUID | MS_NODEV, FsVerdict::read_write,
            "the run's workspace", false);
    p.writable(r.workspace_mount);
    for (const char* dir : {"/home", "/tmp"}) {
        FsView::Op op{FsView::Kind::dir, r.workspace_mount + dir};
        op.mode = 0700;
        op.uid = r.user.uid;
        op.gid = r.user.gid;
        p.add(op.path, op);
    }
    p.bind_clone(r.cache, r.cache, true, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, FsVerdict::read_write,
                 "the sandbox's cache");
    p.writable(r.cache);

    for (const auto& path : r.filesystem.read_only) {
        std::string src = policy_source(path, "read_only", reserved);
        p.bind_clone(src, src, is_dir(src), true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                     FsVerdict::read_only, "filesystem.read_only");
    }
    for (const auto& path : r.filesystem.read_write) {
        std::string src = policy_source(path, "read_write", reserved);
        p.bind_clone(src, src, is_dir(src), true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, FsVerdict::read_write,
                     "filesystem.read_write");
        p.writable(src);
    }
    for (const auto& path : r.filesystem.hide) {
        // Nothing to cover where nothing is; a link is followed to what it names.
        std::string real = real_path(path);
        if (real.empty() || real == "/") continue;
        p.hide(real, "filesystem.hide");
    }
    // The sandbox's own /proc (/proc/self/oom_score_adj, /proc/self/uid_map of a user namespace).
    if (is_dir("/proc")) p.writable("/proc");
    p.finish(is_dir("/proc"));

    for (const auto& op : view->ops) {
        if (op.path.size() >= PATH_MAX) refuse("the path " + op.path + " is too long for the sandbox's view");
    }

    // The command must be reachable in the view: the path given and the file it names.
    for (const auto& path : {r.executable, real_path(r.executable)}) {
        if (path.empty()) continue;
        FsVerdict v = fs_view_verdict(*view, path);
        if (v.access != FsVerdict::hidden) continue;
        std::string fix = ", which the sandbox's filesystem view hides (" + v.why + ")";
        throw Error(ErrorKind::sandbox_unavailable,
                    "the command " + r.executable + " lies in " + v.rule + fix +
                        ": the server could not be started. Move it out of " + v.rule +
                        " (for example under /usr/local or /opt), or add it or its directory to "
                        "filesystem.read_only in the policy",
                    {{"command", r.executable}, {"hidden_by", v.rule}});
    }
    return view;
}

FsVerdict fs_view_verdict(const FsView& view, const std::string& path) {
    FsVerdict v{FsVerdict::read_only, "/", "the host's root, read-only"};
    std::size_t best = 0;
    for (const auto& l : view.layers) {
        // Later layers of the same depth lie on top of earlier ones.
        if (inside(path, l.path) && depth(l.path) >= best) {
            best = depth(l.path);
            v = {l.access, l.path, l.why};
        }
    }
    if (v.access == FsVerdict::hidden && inside(path, "/dev") && v.rule == "/dev" && path != "/dev")
        v.why = "not in the minimal /dev";
    return v;
}

std::string describe_fs_view_step(const FsView& view, int step) {
    if (step < 0 || static_cast<std::size_t>(step) >= view.ops.size()) return "setting up the filesystem view";
    const auto& op = view.ops[static_cast<std::size_t>(step)];
    std::string what;
    switch (op.kind) {
        case FsView::Kind::slave_root: what = "keeping its mounts from the host (MS_SLAVE on /)"; break;
        case FsView::Kind::read_only_root: what = "making the host's root read-only"; break;
        case FsView::Kind::writable: what = "keeping " + op.path + " writable"; break;
        case FsView::Kind::tmpfs: what = "mounting a tmpfs on " + op.path; break;
        case FsView::Kind::bind: what = "binding " + op.path; break;
        case FsView::Kind::dir: what = "creating " + op.path; break;
        case FsView::Kind::symlink: what = "creating the link " + op.path; break;
        case FsView::Kind::seal: what = "making " + op.path + " read-only"; break;
        case FsView::Kind::proc: what = "mounting a fresh /proc"; break;
    }
    return "filesystem view: " + what;
}

namespace {

// Creates what a mount needs where it is missing: the directories leading to `path` and
// `path` itself (a file for a file's bind). Only our own tmpfs layers are writable at this
// point, so a mountpoint the host lacks can only appear under them.
int ensure_mountpoint(const char* path, bool file) noexcept {
    struct stat st {};
    if (::fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0) return 0;
    if (errno != ENOENT) return errno;
    char buf[PATH_MAX];
    std::size_t n = std::strlen(path);
    if (n >= sizeof buf) return ENAMETOOLONG;
    std::memcpy(buf, path, n + 1);
    for (std::size_t i = 1; i < n; ++i) {
        if (buf[i] != '/') continue;
        buf[i] = '\0';
        if (::mkdir(buf, 0755) != 0 && errno != EEXIST) return errno;
        buf[i] = '/';
    }
    if (file) {
        int fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) return errno;
        ::close(fd);
    } else if (::mkdir(path, 0755) != 0) {
        return errno;
    }
    return 0;
}

int apply_op(const FsView::Op& op) noexcept {
    const char* path = op.path.c_str();
    switch (op.kind) {
        case FsView::Kind::slave_root:
            return ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) == 0 ? 0 : errno;
        case FsView::Kind::read_only_root:
            return sys_mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0) == 0 ? 0 : errno;
        case FsView::Kind::writable:
            return sys_mount_setattr(AT_FDCWD, path, 0, 0, MOUNT_ATTR_RDONLY) == 0 ? 0 : errno;
        case FsView::Kind::seal:
            // EBUSY: the mount still counts a writer. Seen once on Linux 6.1 for /dev with twelve
            // sandboxes created at once (Agent.ServersCreatedTogetherHoldOnlyTheirOwnStdio); the
            // cause is not found yet. Retried for up to 100 ms; then the run is refused as before.
            for (int attempt = 0;; ++attempt) {
                if (sys_mount_setattr(AT_FDCWD, path, 0, MOUNT_ATTR_RDONLY, 0) == 0) return 0;
                if (errno != EBUSY || attempt == 50) return errno;
                struct timespec pause {0, 2000000};
                ::nanosleep(&pause, nullptr);
            }
        case FsView::Kind::tmpfs:
            if (int err = ensure_mountpoint(path, false)) return err;
            return ::mount("mcpwarden", path, "tmpfs", op.flags, op.data.c_str()) == 0 ? 0 : errno;
        case FsView::Kind::bind:
            if (int err = ensure_mountpoint(path, op.file)) return err;
            return sys_move_mount(op.fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) == 0 ? 0 : errno;
        case FsView::Kind::dir:
            if (::mkdir(path, op.mode) != 0 && errno != EEXIST) return errno;
            if (::fchownat(AT_FDCWD, path, op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0) return errno;
            return ::fchmodat(AT_FDCWD, path, op.mode, 0) == 0 ? 0 : errno;
        case FsView::Kind::symlink:
            return ::symlink(op.data.c_str(), path) == 0 ? 0 : errno;
        case FsView::Kind::proc:
            // Only a new PID namespace's procfs shows nothing but the sandbox; in the host's,
            // the host's /proc stays.
            if (::getpid() != 1) return 0;
            return ::mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0 ? 0 : errno;
    }
    return EINVAL;
}

}  // namespace

int apply_fs_view(const FsView& view, int* failed_step) noexcept {
    // Directories made for mountpoints must be traversable by the server whatever our umask.
    mode_t old_umask = ::umask(0);
    int err = 0;
    for (std::size_t i = 0; i < view.ops.size() && err == 0; ++i) {
        err = apply_op(view.ops[i]);
        if (err) *failed_step = static_cast<int>(i);
    }
    ::umask(old_umask);
    return err;
}

}  // namespace mcpwarden
