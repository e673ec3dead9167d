// SPDX-License-Identifier: Apache-2.0
#include "error.h"

#include <cstring>

namespace mcpwarden {

std::string_view to_string(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::egress_denied: return "egress_denied";
        case ErrorKind::dns_refused: return "dns_refused";
        case ErrorKind::timeout: return "timeout";
        case ErrorKind::call_timeout: return "call_timeout";
        case ErrorKind::memory_exceeded: return "memory_exceeded";
        case ErrorKind::pids_exceeded: return "pids_exceeded";
        case ErrorKind::input_too_large: return "input_too_large";
        case ErrorKind::input_invalid: return "input_invalid";
        case ErrorKind::tool_denied: return "tool_denied";
        case ErrorKind::result_too_large: return "result_too_large";
        case ErrorKind::result_invalid: return "result_invalid";
        case ErrorKind::server_exited: return "server_exited";
        case ErrorKind::server_error: return "server_error";
        case ErrorKind::policy_invalid: return "policy_invalid";
        case ErrorKind::sandbox_unavailable: return "sandbox_unavailable";
        case ErrorKind::usage: return "usage";
        case ErrorKind::forbidden: return "forbidden";
        case ErrorKind::busy: return "busy";
        case ErrorKind::internal: return "internal";
    }
    return "internal";
}

nlohmann::json Error::to_json() const {
    nlohmann::json j = details_.is_object() ? details_ : nlohmann::json::object();
    j["kind"] = std::string(to_string(kind_));
    j["message"] = what();
    return j;
}

std::string errno_text(std::string_view what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

}  // namespace mcpwarden
