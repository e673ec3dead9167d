// SPDX-License-Identifier: Apache-2.0
// Errors users see: one vocabulary (DESIGN.md "Errors users see") for the CLI, reports,
// MCP error data, the agent API and logs.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mcpwarden {

enum class ErrorKind {
    egress_denied,
    dns_refused,
    timeout,
    call_timeout,
    memory_exceeded,
    pids_exceeded,
    input_too_large,
    input_invalid,
    tool_denied,
    result_too_large,  // an MCP result over max_result_bytes (replaced by this error)
    result_invalid,    // the server answered with a line that is not JSON-RPC
    server_exited,     // the server ended (or closed stdout) with the request pending
    server_error,      // the server answered with a JSON-RPC error (`mcpwarden call`)
    policy_invalid,
    sandbox_unavailable,
    usage,
    forbidden,  // the agent's configuration does not allow this caller what it asked
    busy,       // the agent is at its sandbox cap and its wait queue is full or timed out
    internal,
};

std::string_view to_string(ErrorKind kind);

// An error with a kind from the vocabulary, a message that says what to do next, and the
// figures that explain it (limit, observed, file/line/column, ...).
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, std::string message, nlohmann::json details = nlohmann::json::object())
        : std::runtime_error(std::move(message)), kind_(kind), details_(std::move(details)) {}

    ErrorKind kind() const { return kind_; }
    const nlohmann::json& details() const { return details_; }
    nlohmann::json to_json() const;

private:
    ErrorKind kind_;
    nlohmann::json details_;
};

// "what: strerror(errno)" helper for system call failures.
std::string errno_text(std::string_view what, int err);

}  // namespace mcpwarden
