// SPDX-License-Identifier: Apache-2.0
// The agent's configuration (`mcpwarden agent --config FILE`): where it listens, which policies
// it serves, who may ask for what, and how many sandboxes it runs at once. Parsing is pure
// (text in, struct or Error out); names of users and groups are resolved when a caller
// connects, not here.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "identity.h"
#include "policy.h"

namespace mcpwarden {

inline constexpr const char* kDefaultAgentSocket = "/run/mcpwarden/agent.sock";
inline constexpr const char* kAgentSocketEnv = "MCPWARDEN_AGENT";  // the CLI's socket override

// One `clients:` entry: who (exactly one of uid, gid, user, group) and which policies.
struct AgentClientRule {
    enum class Who { uid, gid, user, group };
    Who who = Who::uid;
    std::uint32_t id = 0;   // uid / gid
    std::string name;       // user / group
    bool all_policies = false;  // policies: "*"
    std::vector<std::string> policies;
    int line = 0, column = 0;  // where the entry is written (for logs)
};

struct AgentLimits {
    std::size_t max_sandboxes = 64;       // running at once, every policy together
    std::size_t max_per_policy = 0;       // running at once per policy; 0 = only the overall cap
    std::size_t queue_length = 64;        // create/call requests waiting for a slot
    std::chrono::milliseconds queue_timeout{30000};  // how long one may wait
    std::size_t max_request_bytes = 1u << 20;        // one API request line
    std::size_t max_connections = 4096;
    // Fair shares between local users (root is exempt from these three): connections one uid
    // holds at once; how long a connection may go without a whole request while nothing of
    // its own runs, is queued or is subscribed; sandboxes running plus queued per client uid
    // (0 = only the other caps).
    std::size_t max_connections_per_uid = 64;
    std::chrono::milliseconds idle_timeout{5000};
    std::size_t max_per_client = 16;
};

struct AgentConfig {
    std::string socket = kDefaultAgentSocket;
    std::uint32_t socket_mode = 0666;  // who may connect is decided per request (SO_PEERCRED)
    std::string policy_dir;            // "" = default_policy_dir()
    std::string state_dir = "/var/lib/mcpwarden";
    // The sandboxes' own uids (identity.h); nullopt = configured_identity_range(state_dir).
    std::optional<UidRange> uid_range;
    std::string cgroup_root;           // "" = the agent's own cgroup
    std::string audit;                 // audit JSON lines also appended here ("" = events only)
    std::string metrics;               // Prometheus text: a Unix socket path or HOST:PORT ("" = off)
    bool json_logs = false;            // the agent's own logs as JSON lines (stderr)
    std::vector<AgentClientRule> clients;
    AgentLimits limits;
    Limits default_limits;             // where neither the policy nor the request sets one
    bool allow_degraded = false;
    // Clients may use a policy that hands its server secrets without pinning its command
    // (policy `command:`); refused by default: such a client could run any program with them.
    bool allow_unpinned_secrets = false;
    // What a restarted agent does with the sandboxes and attachments a previous one left
    // running (crash, SIGKILL): take them over, or end them and remove everything of theirs.
    enum class OnRestart { adopt, kill };
    OnRestart on_restart = OnRestart::adopt;
    std::string source;                // file it was read from
};

// Reads a configuration. Unknown keys and bad values are errors: Error(usage) whose message is
// "file:line:column: what" (every problem found, one per line) and whose details hold
// "errors": [{file, line, column, message}].
AgentConfig parse_agent_config(std::string_view text, const std::string& file_name);
AgentConfig load_agent_config(const std::string& path);

// Who is asking (from SO_PEERCRED, names resolved by the caller).
struct PeerIdentity {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    std::string user;                                  // "" when the uid has no name
    std::vector<std::pair<gid_t, std::string>> groups;  // primary and supplementary
};

// Whether the configuration lets this peer talk to the agent at all (root always may).
bool peer_known(const AgentConfig& config, const PeerIdentity& peer);
// Whether it may run sandboxes under `policy` (root may use every policy).
bool peer_may_use(const AgentConfig& config, const PeerIdentity& peer, const std::string& policy);

// The limits a sandbox gets: what the request asks, which may only lower the policy's; where
// neither sets a limit, the agent's default. Asking more than the policy allows is
// Error(input_invalid) naming the limit (limit_name, limit, observed).
Limits effective_limits(const Limits& policy, const Limits& asked, const Limits& defaults);

}  // namespace mcpwarden
