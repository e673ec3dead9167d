// SPDX-License-Identifier: Apache-2.0
// The subcommands. Each defines its options on the CLI11 app and runs when chosen.
#pragma once

#include <memory>
#include <vector>

#include <CLI/CLI.hpp>

#include "error.h"

namespace mcpwarden {

class Command {
public:
    virtual ~Command() = default;
    virtual void define(CLI::App& parent) = 0;
    virtual int execute() = 0;
    bool chosen() const { return app_ && app_->parsed(); }

protected:
    CLI::App* app_ = nullptr;
};

std::vector<std::unique_ptr<Command>> all_commands();

// The arguments (argv without argv[0]) as CLI11 should parse them. A subcommand that runs a
// command line (a positional option named "command": run, call) takes its own options only up to
// the first positional argument, as clients write it (`run --policy P npx -y pkg`): a "--" is
// inserted there, so that the command's own flags (`-y`, `--help`) are never mcpwarden's.
// An explicit "--" is kept as it is.
std::vector<std::string> command_line_args(const CLI::App& app, std::vector<std::string> args);

// Every Error kind maps to one documented exit code.
int exit_code_for(ErrorKind kind);

std::unique_ptr<Command> make_run_command();
std::unique_ptr<Command> make_call_command();
std::unique_ptr<Command> make_policy_command();
std::unique_ptr<Command> make_agent_command();
std::unique_ptr<Command> make_ps_command();
std::unique_ptr<Command> make_kill_command();
std::unique_ptr<Command> make_events_command();
std::unique_ptr<Command> make_attach_command();  // cmd_attach.cpp
std::unique_ptr<Command> make_detach_command();
std::unique_ptr<Command> make_oci_hook_command();  // cmd_oci_hook.cpp

}  // namespace mcpwarden
