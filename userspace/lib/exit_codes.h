// Process exit codes of mcpwarden (documented in README.md). When the server exits on its own,
// mcpwarden exits with the server's code; 128+N when a signal N ended it.
#pragma once

namespace mcpwarden::exit_code {

constexpr int usage = 64;               // bad command line
constexpr int policy_invalid = 78;      // the policy file has errors (EX_CONFIG)
constexpr int memory_exceeded = 120;    // the sandbox hit its memory limit (OOM kill)
constexpr int pids_exceeded = 121;      // the sandbox hit its process limit
constexpr int timeout = 124;            // the sandbox's wall-clock timeout expired
constexpr int sandbox_unavailable = 125;  // a requested protection cannot be enforced: refused
constexpr int cannot_execute = 126;     // the command exists but could not be executed
constexpr int internal = 70;            // mcpwarden's own failure (EX_SOFTWARE)

}  // namespace mcpwarden::exit_code
