// SPDX-License-Identifier: Apache-2.0
// Where a sandboxed server may write: a private HOME and TMPDIR for the run, and a cache that
// persists per policy (integration) and user, so the second `npx -y some-server` finds its
// packages. Under the state directory (default /var/lib/mcpwarden):
//
//   <state>/sandbox               root 0755, empty on the host: in each sandbox's private mount
//                                 namespace a tmpfs of its own is mounted here, holding
//     home                        0700 user   HOME
//     tmp                         0700 user   TMPDIR
//   <state>/cache             root 0711
//     <policy>                  root 0711
//       <uid>                   0700 user   kept (XDG_CACHE_HOME, npm/pip/uv/go caches); the
//                                           uid is the (policy, client) pair's own
//                                           (identity.h), so no other sandbox can reach it
//       <uid>-for-<client uid>  0700 user   a fixed account (user:, --user) through the agent:
//                                           one per client, since every client's server then
//                                           runs as that same account
// The pair's first run takes over the cache of earlier versions (<policy>/65534 and
// <policy>/65534-for-<client>, when servers ran as nobody).
//
// The run's tmpfs goes away with the sandbox's last process: nothing to remove, no disk write
// per run, and no other sandbox (even of the same user) can see it. Its pages count against
// the sandbox's memory limit, and its size is capped at that limit.
// Every directory above those is root-owned and not writable by the user.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "process.h"

namespace mcpwarden {

class Workspace {
public:
    // `size_bytes`: the cap of the run's tmpfs (the memory limit); nullopt = tmpfs's default.
    // `client_uid`: the agent's client the sandbox runs for; nullopt = a standalone run.
    // `own_identity`: `user` is the (policy, client) pair's own uid, not a fixed account.
    Workspace(const std::string& state_dir, const std::string& policy_name, const UserIdentity& user,
              std::optional<std::uint64_t> size_bytes, std::optional<uid_t> client_uid = std::nullopt,
              bool own_identity = false);

    const std::string& home() const { return home_; }
    const std::string& tmp() const { return tmp_; }
    const std::string& cache() const { return cache_; }
    // What the child mounts in its mount namespace before dropping privileges.
    const std::string& mount_point() const { return mount_point_; }
    const std::string& mount_options() const { return mount_options_; }

private:
    std::string mount_point_, mount_options_, home_, tmp_, cache_;
};

// Removes per-run directories <state>/run/s-* that earlier versions kept on disk, when their
// owner is gone (a crash). Returns how many.
int sweep_stale_workspaces(const std::string& state_dir);

// Removes a directory tree without following symlinks or crossing mounts.
void remove_tree(const std::string& path);

}  // namespace mcpwarden
