// SPDX-License-Identifier: Apache-2.0
// The sandbox's filesystem view as a table of rules: the default view and a policy's
// `filesystem:` section. One table for both sides: `policy explain --path` answers from it and
// the run (fs_view) sets the view up from it, so what explain says is what the server gets.
// Pure: no filesystem access; paths are compared as written (a symlink on the host is not
// followed here).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy.h"

namespace mcpwarden::fsrules {

enum class Access {
    read_only,    // visible, not writable
    read_write,   // visible and writable (as far as the uid's permissions go)
    hidden,       // covered by an empty read-only tmpfs: nothing of the host is there
    private_tmp,  // an empty tmpfs of the sandbox's own (writable, gone with the sandbox)
};
const char* to_string(Access a);  // "read-only", "read-write", "hidden", "private"

struct Rule {
    std::string path;  // absolute, normalised
    Access access = Access::read_only;
    bool from_policy = false;
    std::string why;   // "default: the host's root is read-only", "policy filesystem.read_write"
    std::string describe() const;  // "read-only / (default: the host's root is read-only)"
};

// What the run knows beyond the policy. Empty fields leave their rules out.
struct ViewContext {
    std::string state_dir = "/var/lib/mcpwarden";
    std::string workspace;  // the run's private tmpfs (HOME, TMPDIR): <state>/sandbox
    std::string cache;      // this sandbox's own cache: <state>/cache/<policy>/<uid>
};

// The default view:
//   /                                      read-only
//   /home /root /run /var/run /etc/mcpwarden  hidden
//   <state_dir>                            hidden (but the workspace and the cache below)
//   /tmp /var/tmp /dev/shm                 private
//   /dev                                   hidden but for null zero full random urandom (read-write)
//   <workspace> <cache>                    read-write
std::vector<Rule> default_rules(const ViewContext& ctx);

// default_rules, then the policy's (read_only, read_write, hide), sorted by path so that a
// parent comes before its children: mounting them in this order builds the view.
std::vector<Rule> view_rules(const FilesystemPolicy& policy, const ViewContext& ctx);

struct Decision {
    Access access = Access::read_only;
    Rule rule;  // the rule that decides: the one with the longest path covering the path
    bool readable() const { return access != Access::hidden; }
    bool writable() const { return access == Access::read_write || access == Access::private_tmp; }
};

// The most specific rule covering `path` decides; at the same path a policy rule wins over a
// default one. `path` must be absolute and normalised (normalise_path).
Decision decide(std::string_view path, const FilesystemPolicy& policy, const ViewContext& ctx);

// "/a//b/" -> "/a/b". nullopt with *why for a relative path, an empty one, a path with "." or
// ".." components or a NUL/newline character.
std::optional<std::string> normalise_path(std::string_view path, std::string* why);

// True when `path` is `dir` or below it (both normalised).
bool path_within(std::string_view path, std::string_view dir);

// Why `path` may not appear in the policy list `list` ("read_only", "read_write", "hide"), or
// empty when it may: "/", the state directory and /etc/mcpwarden, the sandbox's own /proc and
// /dev, and /sys writable are refused.
std::string refused_policy_path(const std::string& path, std::string_view list,
                                const std::string& state_dir = "/var/lib/mcpwarden");

}  // namespace mcpwarden::fsrules
