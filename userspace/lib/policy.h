// SPDX-License-Identifier: Apache-2.0
// A per-integration policy: what one MCP server may reach, use and receive.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "net.h"

namespace mcpwarden {

// Where a value came from, for messages ("github.yaml:12:7").
struct SourceLocation {
    std::string file;
    int line = 0;    // 1-based; 0 = not from a file
    int column = 0;  // 1-based
    std::string to_string() const;
};

struct Limits {
    static constexpr std::uint64_t kDefaultOpenFiles = 4096;

    std::optional<std::uint64_t> memory_bytes;
    std::optional<std::uint64_t> pids;
    std::optional<std::uint32_t> cpu_millicores;
    std::optional<std::chrono::milliseconds> timeout;
    // RLIMIT_NOFILE of the server (each of its processes); nullopt = kDefaultOpenFiles.
    std::optional<std::uint64_t> open_files;
};

struct EgressRule {
    std::optional<Cidr> cidr;  // exactly one of cidr and host is set
    std::string host;          // "api.github.com" or "*.example.com"
    std::vector<PortRange> ports;  // empty = every port
    Protocol protocol = Protocol::any;
    SourceLocation where;
    std::string describe() const;  // "allow cidr 10.0.0.0/8 ports 443 tcp (file:3:7)"
};

struct Egress {
    std::vector<EgressRule> allow;
    std::vector<EgressRule> deny;
    bool audit_only = false;
};

struct Dns {
    static constexpr std::chrono::seconds kDefaultMinTtl{30};
    static constexpr std::uint64_t kDefaultMaxLearned = 4096;

    std::vector<std::string> upstream;  // "1.1.1.1", "[2001:db8::1]:53"; empty = resolv.conf
    // Learned addresses live at least this long, whatever the answer's TTL (apps cache).
    std::optional<std::chrono::milliseconds> min_ttl;
    std::optional<std::uint64_t> max_learned;  // per sandbox; default kDefaultMaxLearned
    // Answers in loopback/private/link-local ranges are not admitted unless this is true
    // (DNS rebinding: an allowed name must not open 169.254.169.254 or 127.0.0.1).
    bool allow_reserved_answers = false;
};

struct EnvValue {
    std::string value;
    std::optional<std::string> file;  // read the value from this file at start
};

struct Env {
    std::vector<std::string> pass;  // names copied from mcpwarden's own environment
    std::map<std::string, EnvValue> set;
};

struct McpLimits {
    std::optional<std::chrono::milliseconds> call_timeout;
    std::map<std::string, std::chrono::milliseconds> tool_timeouts;
    std::optional<std::uint64_t> max_message_bytes;
    std::optional<std::uint32_t> max_depth;
    std::optional<std::uint64_t> max_string_bytes;
    std::optional<std::uint64_t> max_array_length;
    std::optional<std::uint64_t> max_content_chars;
    std::optional<std::uint64_t> max_result_bytes;
    std::vector<std::string> tools_allow;  // glob patterns; empty = all
    std::vector<std::string> tools_deny;
    bool enabled = false;  // an "mcp:" section turns MCP mode on
};

// What of the host's filesystem the server sees beyond the default view (policy section
// `filesystem:`): absolute, normalised paths. read_only and read_write are bound into the
// sandbox's view; hide covers a path (the host's or one bound above) with nothing.
struct FilesystemPolicy {
    std::vector<std::string> read_only;
    std::vector<std::string> read_write;
    std::vector<std::string> hide;
};

// The command a policy is for (`command:`): servers given secrets run only as meant. Either
// the exact argv (`command: [npx, -y, "@modelcontextprotocol/server-github"]`), or a prefix
// whose further arguments each match one of `args` (fnmatch globs):
// `command: {prefix: [npx, -y, "@modelcontextprotocol/server-filesystem"], args: ["/srv/*"]}`.
struct CommandPin {
    std::vector<std::string> argv;  // empty = not pinned
    bool prefix = false;
    std::vector<std::string> args;
    SourceLocation where;
    bool pinned() const { return !argv.empty(); }
};

// The persistent cache (`cache:`): its size is checked at the start and end of each run.
struct CachePolicy {
    static constexpr std::uint64_t kDefaultMaxSize = 2ull << 30;  // 2 GiB
    std::optional<std::uint64_t> max_size;  // nullopt = kDefaultMaxSize
    // Over the bound: trim the oldest files until it fits (default), or refuse the run.
    enum class OnFull { trim, refuse } on_full = OnFull::trim;
};

struct Policy {
    std::string name = "default";
    std::string description;
    Limits limits;
    Egress egress;
    bool has_egress = false;  // an "egress:" section was present
    Dns dns;
    Env env;
    McpLimits mcp;
    FilesystemPolicy filesystem;
    std::string user;  // default user for the server; empty = nobody
    // New user namespaces (clone/unshare with CLONE_NEWUSER, clone3) for servers that run a
    // browser with its own namespace sandbox; refused by the seccomp filter otherwise.
    bool allow_user_namespaces = false;
    CommandPin command;
    CachePolicy cache;
    std::string source;  // file it was read from
};

// Reads and validates a policy. Every problem found is reported (not only the first) in one
// Error of kind policy_invalid whose details hold "errors": [{file,line,column,message}] and
// whose message lists them as "file:line:column: message".
Policy load_policy_file(const std::string& path);
Policy parse_policy(const std::string& text, const std::string& file_name);

// A policy name usable as a file or directory name.
bool valid_policy_name(const std::string& name);

}  // namespace mcpwarden
