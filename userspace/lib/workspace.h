// Where a sandboxed server may write: a private HOME and TMPDIR for the run, and a cache that
// persists per policy (integration) and user, so the second `npx -y some-server` finds its
// packages. Everything lives under the state directory (default /var/lib/mcpwarden):
//
//   <state>/run/<sandbox>/home   0700 user   removed when the run ends
//   <state>/run/<sandbox>/tmp    0700 user   removed when the run ends
//   <state>/cache/<policy>/<uid> 0700 user   kept (XDG_CACHE_HOME, npm/pip/uv/go caches)
//
// Every directory above those is root-owned and not writable by the user.
#pragma once

#include <string>

#include "process.h"

namespace mcpwarden {

class Workspace {
public:
    Workspace(const std::string& state_dir, const std::string& sandbox_name,
              const std::string& policy_name, const UserIdentity& user);
    ~Workspace();
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;

    const std::string& home() const { return home_; }
    const std::string& tmp() const { return tmp_; }
    const std::string& cache() const { return cache_; }
    const std::string& run_dir() const { return run_dir_; }

private:
    std::string run_dir_, home_, tmp_, cache_;
};

// Removes run directories left by runs whose owner is gone (a crash). Returns how many.
int sweep_stale_workspaces(const std::string& state_dir);

// Removes a directory tree without following symlinks or crossing mounts.
void remove_tree(const std::string& path);

}  // namespace mcpwarden
