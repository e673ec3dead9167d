// SPDX-License-Identifier: Apache-2.0
// The client side of the agent API (docs/api.md), used by `mcpwarden run/call/ps/kill/events`
// when they go through a running agent.
#pragma once

#include <initializer_list>
#include <optional>
#include <utility>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "error.h"
#include "fd.h"

namespace mcpwarden {

// The socket to use: `flag` when given, else $MCPWARDEN_AGENT, else kDefaultAgentSocket.
std::string agent_socket_path(const std::string& flag);

class AgentClient {
public:
    // Connects. Returns nullopt when no agent listens there (no socket, or nobody accepting);
    // throws Error for anything else (permission denied on the socket, ...).
    static std::optional<AgentClient> connect(const std::string& path);

    // One request line, with fds attached (SCM_RIGHTS) when given.
    void send(const nlohmann::json& request, std::span<const int> fds = {});
    // The next message. nullopt when the agent closed the connection or timeout_ms passed
    // (-1 = wait). Fds that came with it are appended to `fds` (closed when not wanted).
    std::optional<nlohmann::json> receive(std::vector<UniqueFd>* fds = nullptr, int timeout_ms = -1);
    // Waits for the final answer to `id` (skipping events, which go to on_event when given);
    // an {"ok": false} answer is thrown as the Error it carries.
    nlohmann::json result(const nlohmann::json& id);

    int fd() const { return fd_.get(); }
    bool eof() const { return eof_; }  // the agent closed the connection
    const std::string& path() const { return path_; }

private:
    UniqueFd fd_;
    std::string path_;
    std::string buf_;
    std::vector<UniqueFd> pending_fds_;
    bool eof_ = false;
};

// An error answer ({kind, message, ...}) as the Error it stands for.
Error error_from_json(const nlohmann::json& error);

}  // namespace mcpwarden

namespace mcpwarden {

// The agent `mcpwarden run/call` go through, or nullopt to run standalone. Root runs
// standalone unless `flag` or $MCPWARDEN_AGENT names a socket; anyone else always goes through
// the agent, and gets Error(sandbox_unavailable) saying how to start one when none listens.
std::optional<AgentClient> agent_for_cli(const std::string& flag);

// `run` through the agent: sends `request` (a create with stdio "pass") with our fds 0, 1 and
// 2, turns SIGINT, SIGTERM and SIGHUP into a kill of the sandbox (as that signal), and returns
// the final result {report, exit_code}. A refusal is thrown as its Error.
nlohmann::json agent_run(AgentClient& client, const nlohmann::json& request);

// The sandbox part of a create or call request from the CLI's flags: bare --env NAME takes
// NAME from our environment, which also goes along as source_env (the policy's env.pass).
struct CliSandboxArgs {
    std::string policy, memory, pids, cpu, timeout;
    std::vector<std::string> env, command;
};
nlohmann::json agent_sandbox_request(const std::string& op, const CliSandboxArgs& args);

// Flags that only a standalone run takes (the agent's configuration decides those): a usage
// error naming the first one given.
void refuse_standalone_flags(std::initializer_list<std::pair<const char*, bool>> given);

}  // namespace mcpwarden
