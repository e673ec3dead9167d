// SPDX-License-Identifier: Apache-2.0
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
    out.push_back(make_oci_hook_command());
    return out;
}

namespace {

// Index of the first argument from `i` on that is not an option of `app` (or an option's value);
// args.size() when there is none, or the index of "--" itself.
std::size_t first_positional(const CLI::App& app, const std::vector<std::string>& args, std::size_t i) {
    while (i < args.size()) {
        const std::string& a = args[i];
        if (a == "--" || a.size() < 2 || a[0] != '-') return i;
        bool is_long = a[1] == '-';
        std::string name = is_long ? a.substr(0, a.find('=')) : a.substr(0, 2);
        bool value_attached = is_long ? a.find('=') != std::string::npos : a.size() > 2;
        const CLI::Option* opt = app.get_option_no_throw(name);
        // A flag expects no value (expected 0): its type size alone does not say so.
        bool takes_value = opt && opt->get_items_expected_max() > 0;
        i += (takes_value && !value_attached) ? 2 : 1;
    }
    return args.size();
}

}  // namespace

std::vector<std::string> command_line_args(const CLI::App& app, std::vector<std::string> args) {
    std::size_t i = first_positional(app, args, 0);
    if (i >= args.size() || args[i] == "--") return args;
    const std::string& name = args[i];
    auto subs = app.get_subcommands([&](const CLI::App* s) { return s->get_name() == name; });
    if (subs.empty()) return args;
    const CLI::Option* command = subs.front()->get_option_no_throw("command");
    if (!command || !command->get_positional()) return args;
    std::size_t at = first_positional(*subs.front(), args, i + 1);
    if (at < args.size() && args[at] != "--") args.insert(args.begin() + static_cast<std::ptrdiff_t>(at), "--");
    return args;
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
