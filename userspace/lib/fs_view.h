// SPDX-License-Identifier: Apache-2.0
// The sandbox's private view of the filesystem (docs/security.md, "Filesystem view"), set up in
// the child's own mount namespace before the server's first instruction:
//
//   /                      the host's, read-only (every mount below it too, except /proc)
//   /home /root /run /var/run /etc/mcpwarden, the state directory (and the default one)
//                          hidden: an empty read-only tmpfs
//   /tmp /var/tmp /dev/shm private tmpfs, mode 1777, sized to the memory limit (their pages are
//                          charged to the sandbox's memory cgroup)
//   /dev                   a read-only tmpfs holding null, zero, full, random, urandom (the host's
//                          nodes, bound), shm/, and the fd, stdin, stdout, stderr links; no
//                          terminal (pts, tty, ptmx)
//   <state>/sandbox        the run's tmpfs with home/ and tmp/ (workspace.h)
//   <state>/cache/<policy>/<...>   this sandbox's persistent cache, bound read-write
//   policy filesystem:     read_only and read_write host paths bound in, hide covered
//   /proc                  a fresh procfs when the child is PID 1 of a new PID namespace,
//                          otherwise the host's
//
// Whatever cannot be set up as asked refuses the run (Error sandbox_unavailable, exit 125):
// the sandbox never starts with a wider view than the one described.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "fd.h"
#include "policy.h"
#include "process.h"

namespace mcpwarden {

struct FsViewRequest {
    std::string state_dir;          // --state-dir (hidden but for the two entries below)
    std::string executable;         // resolved: refused when the view hides it
    std::string workspace_mount;    // <state>/sandbox: the run's tmpfs (home/, tmp/)
    std::string workspace_options;  // its tmpfs options
    std::string cache;              // the sandbox's persistent cache (bound read-write)
    UserIdentity user;              // owner of the workspace's home/ and tmp/
    std::optional<std::uint64_t> tmpfs_size;  // size of /tmp, /var/tmp and /dev/shm
    FilesystemPolicy filesystem;
};

// What the view makes of a host path. `rule` is the path of the layer that decides ("/" for
// the host's root).
struct FsVerdict {
    enum Access { read_only, read_write, hidden } access = read_only;
    std::string rule;
    std::string why;  // "hidden", "private tmpfs", "filesystem.read_write", ...
};

// Everything the child needs, prepared in the parent: paths, mount options and the bind
// sources as detached mounts (open_tree), so that no layer of the view can hide a source and
// the child makes no allocation. Holds descriptors: destroy it once the child has started.
struct FsView {
    enum class Kind : std::uint8_t {
        slave_root,   // mount propagation: nothing of the view reaches the host
        read_only_root,
        writable,     // mount_setattr: clear read-only again (the host's /proc)
        tmpfs,
        bind,         // move_mount of a detached mount (fd)
        dir,          // mkdir with mode, owned by uid:gid
        symlink,      // data -> path
        seal,         // mount_setattr: read-only (a tmpfs of ours, once filled)
        proc,         // a fresh procfs, when PID 1 of a new PID namespace
    };
    struct Op {
        Op(Kind k, std::string p, std::string d = {}, unsigned long f = 0)
            : kind(k), path(std::move(p)), data(std::move(d)), flags(f) {}
        Kind kind;
        std::string path;
        std::string data;  // tmpfs options; the symlink's target
        unsigned long flags = 0;
        int fd = -1;
        bool file = false;  // the mountpoint to create is a file
        unsigned mode = 0755;
        uid_t uid = 0;
        gid_t gid = 0;
    };
    struct Layer {
        std::string path;
        FsVerdict::Access access;
        std::string why;
    };
    std::vector<Op> ops;
    std::vector<UniqueFd> fds;
    std::vector<Layer> layers;  // for fs_view_verdict
};

// Throws Error(sandbox_unavailable) naming the path and why it cannot be set up, or when the
// command lies in a part of the host the view hides.
std::unique_ptr<FsView> plan_fs_view(const FsViewRequest& request);

// Runs in the child: raw system calls only, no allocation (it may share the parent's memory).
// Called as root inside a new mount namespace (and the PID and IPC namespaces when there are),
// with the FsView's descriptors still in its table. Mounts /proc as its last step when it is
// PID 1. Returns 0, or an errno with *failed_step set for describe_fs_view_step.
int apply_fs_view(const FsView& view, int* failed_step) noexcept;

// "hiding /home (tmpfs)", for the parent's message about a failed step.
std::string describe_fs_view_step(const FsView& view, int step);

// The deepest layer of the view that holds `path` (absolute, normalised) decides.
FsVerdict fs_view_verdict(const FsView& view, const std::string& path);

}  // namespace mcpwarden
