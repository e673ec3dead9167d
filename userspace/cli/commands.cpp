#include "commands.h"

#include "exit_codes.h"

namespace mcpwarden {

std::vector<std::unique_ptr<Command>> all_commands() {
    std::vector<std::unique_ptr<Command>> out;
    out.push_back(make_run_command());
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
        default: return exit_code::internal;
    }
}

}  // namespace mcpwarden
