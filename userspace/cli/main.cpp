// SPDX-License-Identifier: Apache-2.0
// mcpwarden: command dispatch only; the work is in the library.
#include <signal.h>

#include <algorithm>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.h"
#include "error.h"
#include "exit_codes.h"
#include "version.h"

using namespace mcpwarden;

namespace {

void setup_logging(const std::string& level) {
    // Logs go to stderr only: stdout belongs to the sandboxed server (MCP over stdio).
    auto logger = spdlog::stderr_logger_mt("mcpwarden");
    logger->set_pattern("mcpwarden: %l: %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"mcpwarden: run MCP stdio servers as untrusted code, confined by the kernel "
                 "(cgroups and eBPF)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "mcpwarden " MCPWARDEN_VERSION);
    std::string log_level = "warning";
    app.add_option("--log-level", log_level, "trace, debug, info, warning, error or off (logs go to stderr)")
        ->check(CLI::IsMember({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}));

    auto commands = all_commands();
    for (auto& cmd : commands) cmd->define(app);

    try {
        // CLI11 takes the arguments last first.
        std::vector<std::string> args = command_line_args(app, std::vector<std::string>(argv + 1, argv + argc));
        std::reverse(args.begin(), args.end());
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        int code = app.exit(e);
        return code == 0 ? 0 : exit_code::usage;
    }
    setup_logging(log_level);
    for (auto& cmd : commands) {
        if (cmd->chosen()) {
            try {
                return cmd->execute();
            } catch (const Error& e) {
                std::cerr << "mcpwarden: " << to_string(e.kind()) << ": " << e.what() << "\n";
                return exit_code_for(e.kind());
            } catch (const std::exception& e) {
                std::cerr << "mcpwarden: internal error: " << e.what() << "\n";
                return exit_code::internal;
            }
        }
    }
    return exit_code::usage;
}
