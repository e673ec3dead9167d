#include "commands.h"

#include "exit_codes.h"

namespace mcpwarden {

std::vector<std::unique_ptr<Command>> all_commands() {
    std::vector<std::unique_ptr<Command>> out;
    out.push_back(make_run_command());
    out.push_back(make_call_command());
    out.push_back(make_policy_command());
    out.push_back(make_agent_command());
    out.push_back(make_ps_command());
    out.push_back(make_kill_command());
    out.push_back(make_events_command());
    out.push_back(make_attach_command());
    out.push_back(make_detach_command());
    return out;
}

int exit_code_for(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::policy_invalid: return exit_code::policy_invalid;
        case ErrorKind::sandbox_unavailable: return exit_code::sandbox_unavailable;
        case ErrorKind::usage: return exit_code::usage;
        case ErrorKind::timeout: return exit_code::timeout;
        case ErrorKind::memory_exceeded: return exit_code::memory_exceeded;
        case ErrorKind::pids_exceeded: return exit_code::pids_exceeded;
        case ErrorKind::input_too_large:
        case ErrorKind::input_invalid: return exit_code::input_rejected;
        case ErrorKind::tool_denied: return exit_code::tool_denied;
        case ErrorKind::call_timeout: return exit_code::call_timeout;
        case ErrorKind::result_too_large: return exit_code::result_too_large;
        case ErrorKind::result_invalid: return exit_code::result_invalid;
        case ErrorKind::server_exited: return exit_code::server_exited;
        case ErrorKind::server_error: return exit_code::call_server_error;
        case ErrorKind::forbidden: return exit_code::forbidden;
        case ErrorKind::busy: return exit_code::busy;
        default: return exit_code::internal;
    }
}

}  // namespace mcpwarden
