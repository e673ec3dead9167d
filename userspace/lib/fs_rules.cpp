// SPDX-License-Identifier: Apache-2.0
#include "fs_rules.h"

#include <algorithm>

namespace mcpwarden::fsrules {

const char* to_string(Access a) {
    switch (a) {
        case Access::read_only: return "read-only";
        case Access::read_write: return "read-write";
        case Access::hidden: return "hidden";
        case Access::private_tmp: return "private";
    }
    return "?";
}

std::string Rule::describe() const {
    return std::string(to_string(access)) + " " + path + " (" + why + ")";
}

std::optional<std::string> normalise_path(std::string_view path, std::string* why) {
    if (path.empty()) {
        *why = "a path may not be empty";
        return std::nullopt;
    }
    if (path.find('\0') != std::string_view::npos || path.find('\n') != std::string_view::npos) {
        *why = "a path may not hold a NUL or newline character";
        return std::nullopt;
    }
    if (path[0] != '/') {
        *why = "'" + std::string(path) + "' is not an absolute path (write it from /, without ~)";
        return std::nullopt;
    }
    std::string out;
    size_t i = 0;
    while (i < path.size()) {
        while (i < path.size() && path[i] == '/') ++i;
        size_t end = path.find('/', i);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(i, end - i);
        if (part == "." || part == "..") {
            *why = "'" + std::string(path) + "' has a '" + std::string(part) +
                   "' component; write the path without it";
            return std::nullopt;
        }
        if (!part.empty()) {
            out += '/';
            out += part;
        }
        i = end;
    }
    if (out.empty()) out = "/";
    return out;
}

bool path_within(std::string_view path, std::string_view dir) {
    if (dir == "/") return !path.empty() && path[0] == '/';
    if (path.size() < dir.size() || path.compare(0, dir.size(), dir) != 0) return false;
    return path.size() == dir.size() || path[dir.size()] == '/';
}

std::vector<Rule> default_rules(const ViewContext& ctx) {
    std::vector<Rule> r;
    auto add = [&r](std::string path, Access a, std::string why) {
        r.push_back({std::move(path), a, false, "default: " + std::move(why)});
    };
    add("/", Access::read_only, "the host's root is read-only");
    add("/home", Access::hidden, "users' homes are hidden");
    add("/root", Access::hidden, "root's home is hidden");
    add("/run", Access::hidden, "runtime state and sockets of the host are hidden");
    add("/var/run", Access::hidden, "runtime state and sockets of the host are hidden");
    add("/etc/mcpwarden", Access::hidden, "mcpwarden's configuration and secrets are hidden");
    if (!ctx.state_dir.empty()) {
        add(ctx.state_dir, Access::hidden, "mcpwarden's state (other sandboxes' caches) is hidden");
    }
    add("/tmp", Access::private_tmp, "a private /tmp, gone with the sandbox");
    add("/var/tmp", Access::private_tmp, "a private /var/tmp, gone with the sandbox");
    add("/dev", Access::hidden, "a minimal /dev");
    for (const char* node : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
        add(node, Access::read_write, "a device of the minimal /dev");
    }
    add("/dev/shm", Access::private_tmp, "a private /dev/shm, gone with the sandbox");
    if (!ctx.workspace.empty()) {
        add(ctx.workspace, Access::read_write, "the run's HOME and TMPDIR (a private tmpfs)");
    }
    if (!ctx.cache.empty()) {
        add(ctx.cache, Access::read_write, "this sandbox's own persistent cache");
    }
    return r;
}

std::vector<Rule> view_rules(const FilesystemPolicy& policy, const ViewContext& ctx) {
    std::vector<Rule> r = default_rules(ctx);
    auto add = [&r](const std::vector<std::string>& paths, Access a, const char* list) {
        for (const auto& p : paths) r.push_back({p, a, true, std::string("policy filesystem.") + list});
    };
    add(policy.read_only, Access::read_only, "read_only");
    add(policy.read_write, Access::read_write, "read_write");
    add(policy.hide, Access::hidden, "hide");
    // Parents first; at the same path the default before the policy's (which then wins).
    std::stable_sort(r.begin(), r.end(), [](const Rule& a, const Rule& b) {
        auto depth = [](const std::string& p) {
            return p == "/" ? 0 : static_cast<long>(std::count(p.begin(), p.end(), '/'));
        };
        if (depth(a.path) != depth(b.path)) return depth(a.path) < depth(b.path);
        return a.from_policy < b.from_policy;
    });
    return r;
}

Decision decide(std::string_view path, const FilesystemPolicy& policy, const ViewContext& ctx) {
    Decision d;
    bool found = false;
    for (auto& rule : view_rules(policy, ctx)) {
        if (!path_within(path, rule.path)) continue;
        // view_rules orders by depth, so a later covering rule is at least as specific.
        d.rule = std::move(rule);
        found = true;
    }
    if (found) d.access = d.rule.access;
    return d;
}

std::string refused_policy_path(const std::string& path, std::string_view list,
                                const std::string& state_dir) {
    if (path == "/") {
        return "'/' is the whole host: name the directories the server needs";
    }
    if (!state_dir.empty() && path_within(path, state_dir)) {
        return "'" + path + "' is in mcpwarden's state directory " + state_dir +
               " (other sandboxes' caches); the sandbox's own cache is already writable";
    }
    if (path_within(path, "/etc/mcpwarden")) {
        return "'" + path + "' is in /etc/mcpwarden (mcpwarden's configuration and secrets)";
    }
    if (path_within(path, "/proc") || path_within(path, "/dev")) {
        return "'" + path + "' is in the sandbox's own " +
               (path_within(path, "/proc") ? "/proc" : "/dev") + ", which a policy does not change";
    }
    if (list == "read_write" && path_within(path, "/sys")) {
        return "'" + path + "' is in /sys, which is never writable in a sandbox";
    }
    return "";
}

}  // namespace mcpwarden::fsrules
