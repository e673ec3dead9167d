// SPDX-License-Identifier: Apache-2.0
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
constexpr int forbidden = 67;           // the agent does not allow this user that policy (EX_NOUSER)
constexpr int busy = 75;                // the agent is at capacity; try again later (EX_TEMPFAIL)

// `mcpwarden call` (README "mcpwarden call"); the sandbox codes above apply to it too.
constexpr int call_tool_error = 1;      // the tool ran and reported an error (isError: true)
constexpr int call_server_error = 2;    // the server answered with a JSON-RPC error
constexpr int input_rejected = 65;      // input_too_large / input_invalid: never reached the server
constexpr int server_exited = 69;       // the server ended before it answered
constexpr int result_invalid = 76;      // the server's answer was not JSON-RPC
constexpr int tool_denied = 77;         // the policy does not allow the tool
constexpr int call_timeout = 122;       // the request's deadline passed (it was cancelled)
constexpr int result_too_large = 123;   // the result exceeded max_result_bytes

}  // namespace mcpwarden::exit_code
