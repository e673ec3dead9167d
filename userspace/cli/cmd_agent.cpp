// SPDX-License-Identifier: Apache-2.0
// mcpwarden agent / ps / kill / events: the agent, and the commands that talk to it.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include <spdlog/spdlog.h>

#include "agent_client.h"
#include "agent_config.h"
#include "agent_server.h"
#include "commands.h"
#include "error.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;

// glibc keeps freed blocks in a cache per thread (tcache). The agent runs a thread per
// sandbox, and their caches held ~13 KiB per sandbox that nothing used (bench_agent, 1,000
// sandboxes: 86 MiB -> 73 MiB). glibc reads the tunable at start only, so the agent sets it
// and executes itself again, once; if that fails it goes on as it is.
void exec_without_thread_caches() {
    const char* now = std::getenv("GLIBC_TUNABLES");
    std::string tunables = now ? now : "";
    if (tunables.find("glibc.malloc.tcache_count") != std::string::npos) return;
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<char*> argv;
    for (size_t at = 0; at < cmdline.size(); at = cmdline.find('\0', at) + 1) argv.push_back(cmdline.data() + at);
    if (argv.empty()) return;
    argv.push_back(nullptr);
    tunables += (tunables.empty() ? "" : ":") + std::string("glibc.malloc.tcache_count=0");
    ::setenv("GLIBC_TUNABLES", tunables.c_str(), 1);
    ::execv("/proc/self/exe", argv.data());
    spdlog::debug("agent: could not execute itself again without thread caches: {}", std::strerror(errno));
}

class AgentCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "agent",
            "Run the privileged host agent: it listens on a Unix socket and runs sandboxes for the "
            "users its configuration allows (mcpwarden run/call/ps/kill/events go through it). Runs "
            "until SIGTERM or SIGINT, which end every sandbox it runs. Protocol: docs/api.md.");
        app_->add_option("--config", config_file_, "Configuration (YAML); default: every default, root only")
            ->check(CLI::ExistingFile);
        app_->add_option("--socket", socket_, "Listen here instead of the configuration's socket");
        app_->add_flag("--log-json", json_logs_, "Logs as JSON lines on stderr (also log_format: json in the configuration)");
        app_->footer("Exit status: 0 after SIGTERM/SIGINT; 64 bad configuration (file:line:column); 125 the "
                     "socket cannot be used; 70 internal error.");
    }

    int execute() override {
        if (::geteuid() != 0)
            throw Error(ErrorKind::sandbox_unavailable, "mcpwarden agent must run as root (it creates cgroups and attaches BPF programs)");
        exec_without_thread_caches();
        AgentConfig config = config_file_.empty() ? AgentConfig{} : load_agent_config(config_file_);
        if (!socket_.empty()) config.socket = socket_;
        if (config.json_logs || json_logs_) use_json_logs();
        Agent agent(std::move(config));
        agent.recover();
        return agent.serve();
    }

private:
    std::string config_file_, socket_;
    bool json_logs_ = false;
};

// The connection of ps / kill / events.
AgentClient connect_agent(const std::string& flag) {
    std::string path = agent_socket_path(flag);
    auto c = AgentClient::connect(path);
    if (!c)
        throw Error(ErrorKind::sandbox_unavailable,
                    "no mcpwarden agent listens on " + path + ": start one as root (mcpwarden agent --config FILE)",
                    {{"socket", path}});
    return std::move(*c);
}

class PsCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand("ps", "List the agent's sandboxes (yours; root sees every one, and the "
                                           "policies attached to cgroups: STATE attached, COMMAND the cgroup)");
        app_->add_option("--agent", agent_, "The agent's socket (default: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock)");
        app_->add_flag("--json", json_, "Print the agent's answer as JSON");
    }
    int execute() override {
        auto client = connect_agent(agent_);
        client.send({{"v", 1}, {"id", 1}, {"op", "list"}});
        json r = client.result(1);
        if (json_) {
            std::cout << r.dump() << "\n";
            return 0;
        }
        std::printf("%-28s %-14s %-9s %8s %6s %-20s  %s\n", "SANDBOX", "POLICY", "STATE", "PID", "UID", "SERVER",
                    "COMMAND");
        for (const auto& s : r["sandboxes"]) {
            std::string cmd;
            for (const auto& a : s["command"]) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
            // UID: the client's; SERVER: the uid the server runs as (the pair's own).
            std::printf("%-28s %-14s %-9s %8lld %6lld %-20s  %s\n", s.value("sandbox", "").c_str(),
                        s.value("policy", "").c_str(), s.value("state", "").c_str(), s.value("pid", 0LL),
                        s.value("uid", 0LL), s.value("server_user", "-").c_str(), cmd.c_str());
        }
        // Policies attached to cgroups (root sees them): a container's by its short id.
        for (const auto& a : r.value("attachments", json::array())) {
            std::printf("%-28s %-14s %-9s %8s %6s %-20s  %s\n", a.value("name", "").c_str(),
                        a.value("policy", "").c_str(), "attached", "-", "0", "-",
                        a.value("cgroup", "").c_str());
        }
        return 0;
    }

private:
    std::string agent_;
    bool json_ = false;
};

class KillCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand("kill", "End a sandbox of the agent (every process in it); its client gets the report");
        app_->add_option("sandbox", name_, "The sandbox's name (mcpwarden ps)")->required();
        app_->add_option("--signal", signal_, "Recorded as the signal that ended it (default 15: exit status 143)")
            ->check(CLI::Range(1, 64));
        app_->add_option("--agent", agent_, "The agent's socket (default: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock)");
    }
    int execute() override {
        auto client = connect_agent(agent_);
        client.send({{"v", 1}, {"id", 1}, {"op", "kill"}, {"sandbox", name_}, {"signal", signal_}});
        client.result(1);
        return 0;
    }

private:
    std::string agent_, name_;
    int signal_ = 15;
};

class EventsCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand("events",
                                     "Print the agent's audit and lifecycle events as JSON lines until interrupted "
                                     "(your sandboxes'; root sees every one)");
        app_->add_option("--sandbox", sandbox_, "Only this sandbox's events");
        app_->add_option("--agent", agent_, "The agent's socket (default: $MCPWARDEN_AGENT, else /run/mcpwarden/agent.sock)");
    }
    int execute() override {
        auto client = connect_agent(agent_);
        json req = {{"v", 1}, {"id", 1}, {"op", "events"}};
        if (!sandbox_.empty()) req["sandbox"] = sandbox_;
        client.send(req);
        client.result(1);
        while (auto m = client.receive()) {
            m->erase("v");
            m->erase("id");
            std::cout << m->dump() << "\n" << std::flush;
        }
        return 0;
    }

private:
    std::string agent_, sandbox_;
};

}  // namespace

std::unique_ptr<Command> make_agent_command() { return std::make_unique<AgentCommand>(); }
std::unique_ptr<Command> make_ps_command() { return std::make_unique<PsCommand>(); }
std::unique_ptr<Command> make_kill_command() { return std::make_unique<KillCommand>(); }
std::unique_ptr<Command> make_events_command() { return std::make_unique<EventsCommand>(); }

}  // namespace mcpwarden
