// SPDX-License-Identifier: Apache-2.0
// mcpwarden attach / detach: a policy on a cgroup someone else created.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include "agent_client.h"
#include "attachment.h"
#include "commands.h"
#include "error.h"
#include "policy_dir.h"

namespace mcpwarden {
namespace {

class AttachCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "attach",
            "Put a policy's egress enforcement, DNS redirection and audit on an existing cgroup (a "
            "systemd service's, a container's) without spawning anything: the processes already "
            "inside are enforced from their next connection on.");
        app_->add_option("--cgroup", cgroup_, "The cgroup directory (cgroup v2; on a hybrid host under /sys/fs/cgroup/unified)")
            ->required();
        app_->add_option("--policy", policy_, "Policy file (YAML), or NAME for POLICY_DIR/NAME.yaml")->required();
        app_->add_option("--policy-dir", policy_dir_, "Directory that policy names resolve in");
        app_->add_option("--audit", audit_file_, "Append audit events (JSON lines) to FILE instead of stderr");
        app_->add_flag("--audit-only", audit_only_, "Log the egress the policy would deny, but allow it");
        app_->add_option("--agent", agent_, "Ask the agent on this socket (also $MCPWARDEN_AGENT) to hold the attachment");
        app_->add_option("--name", name_,
                         "Name the attachment (audit lines' \"sandbox\", ps, metrics) instead of cg-<cgroup id>");
        app_->footer(
            "With --agent (or $MCPWARDEN_AGENT), the agent holds the attachment (resolver, audit "
            "in its events) and attach returns at once; it survives an agent crash and the next "
            "agent adopts it. Without an agent, attach stays in the foreground: it holds the cgroup's DNS resolver "
            "and writes its audit until `mcpwarden detach --cgroup PATH`, SIGTERM or SIGINT "
            "(which detach), or until the cgroup is removed. SIGHUP reloads the policy file. "
            "If attach is killed (SIGKILL), the policy stays enforced (pinned links; fail "
            "closed) but host names no longer resolve in the cgroup until detach. "
            "Exit status: 0 after detach, 64 usage (no such cgroup, already attached, the root "
            "or mcpwarden's own cgroup), 78 invalid policy, 125 cannot enforce.");
    }

    int execute() override {
        if (auto agent = agent_for_cli(agent_)) {
            refuse_standalone_flags({{"--policy-dir", !policy_dir_.empty()}, {"--audit", !audit_file_.empty()}});
            nlohmann::json req = {{"v", 1}, {"id", 1}, {"op", "attach"}, {"cgroup", cgroup_}, {"policy", policy_},
                                  {"audit_only", audit_only_}};
            if (!name_.empty()) req["name"] = name_;
            agent->send(req);
            std::cout << agent->result(1).dump() << std::endl;
            return 0;
        }
        if (::geteuid() != 0)
            throw Error(ErrorKind::sandbox_unavailable, "mcpwarden attach must run as root (it attaches BPF programs)");
        std::string file = resolve_policy(policy_, policy_dir_);
        Policy policy = load_policy_file(file);
        // Signals through a signalfd, blocked before anything is attached.
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
        ::sigprocmask(SIG_BLOCK, &set, nullptr);
        UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!sfd) throw Error(ErrorKind::internal, errno_text("signalfd", errno));

        EventLoop loop;
        AttachTarget target = open_attach_target(cgroup_);
        target.name = name_;
        Attachment attachment(policy, std::move(target), audit_only_, make_audit_logger(audit_file_), loop);
        nlohmann::json first = attachment.info();
        first.erase("egress_denied");
        first["attached"] = attachment.path();
        first["pid"] = ::getpid();
        std::cout << first.dump() << std::endl;
        bool done = false;
        loop.add(sfd.get(), EPOLLIN, [&](std::uint32_t) {
            struct signalfd_siginfo si {};
            while (::read(sfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                if (si.ssi_signo == SIGHUP) {
                    try {
                        attachment.reload(load_policy_file(file));
                        spdlog::warn("reloaded policy {} on {}", file, attachment.path());
                    } catch (const Error& e) {
                        // A bad edit changes nothing: the policy in force stays.
                        spdlog::error("policy {} not reloaded: {}", file, e.what());
                    }
                } else {
                    done = true;
                }
            }
        });
        UniqueFd tick = make_timer(std::chrono::seconds(1), true);
        loop.add(tick.get(), EPOLLIN, [&](std::uint32_t) {
            std::uint64_t n;
            (void)!::read(tick.get(), &n, sizeof n);
            if (!attachment.cgroup_alive()) {
                spdlog::warn("cgroup {} was removed; detaching", attachment.path());
                done = true;
            }
        });
        while (!done) loop.run_once(-1);
        loop.remove(sfd.get());
        loop.remove(tick.get());
        auto figures = attachment.detach();
        figures["detached"] = attachment.path();
        std::cout << figures.dump() << std::endl;
        return 0;
    }

private:
    std::string cgroup_, policy_, policy_dir_, audit_file_, agent_, name_;
    bool audit_only_ = false;
};

class DetachCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "detach",
            "Remove what attach put on a cgroup (links, pins, rules, the resolver): the cgroup is "
            "as it was before attach.");
        app_->add_option("--cgroup", cgroup_, "The cgroup directory given to attach")->required();
        app_->add_option("--agent", agent_, "Ask the agent on this socket (also $MCPWARDEN_AGENT) to detach");
        app_->footer("Exit status: 0 detached, 64 nothing attached there.");
    }

    int execute() override {
        if (auto agent = agent_for_cli(agent_)) {
            agent->send({{"v", 1}, {"id", 1}, {"op", "detach"}, {"cgroup", cgroup_}});
            std::cout << agent->result(1).dump() << std::endl;
            return 0;
        }
        if (::geteuid() != 0) throw Error(ErrorKind::sandbox_unavailable, "mcpwarden detach must run as root");
        detach_cgroup(cgroup_);
        std::cout << nlohmann::json{{"detached", cgroup_}}.dump() << std::endl;
        return 0;
    }

private:
    std::string cgroup_, agent_;
};

}  // namespace

std::unique_ptr<Command> make_attach_command() { return std::make_unique<AttachCommand>(); }
std::unique_ptr<Command> make_detach_command() { return std::make_unique<DetachCommand>(); }

}  // namespace mcpwarden
