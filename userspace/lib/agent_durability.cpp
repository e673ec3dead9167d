// SPDX-License-Identifier: Apache-2.0
// The agent's live policy updates (reload op, SIGHUP) and crash recovery: a restarted agent
// finds the sandboxes a previous one left running (its records in <state_dir>/agent/sandboxes,
// their cgroups and pinned enforcement) and adopts or ends them (config on_restart).
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent_server.h"
#include "attachment.h"
#include "cgroup.h"
#include "egress_extension.h"
#include "enforcer.h"
#include "error.h"
#include "policy_dir.h"
#include "workspace.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// Every process of the sandbox's cgroups gets `sig` (SIGKILL: cgroup.kill where there is one).
void signal_cgroups(const std::vector<std::string>& paths, int sig) {
    for (const auto& p : paths) {
        if (sig == SIGKILL && write_file(p + "/cgroup.kill", "1")) continue;
        std::string procs;
        if (!read_file(p + "/cgroup.procs", procs)) continue;
        std::istringstream in(procs);
        for (pid_t pid; in >> pid;) ::kill(pid, sig);
    }
}

bool populated(const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
        std::string procs;
        if (read_file(p + "/cgroup.procs", procs) && procs.find_first_of("0123456789") != std::string::npos) return true;
    }
    return false;
}

// Kills what is left and removes the directories (every hierarchy).
void destroy_cgroups(const std::vector<std::string>& paths) {
    signal_cgroups(paths, SIGKILL);
    for (int i = 0; i < 500 && populated(paths); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (const auto& p : paths) remove_sandbox_cgroup(p);
}

std::uint64_t cgroup_id_of(const std::vector<std::string>& paths) {
    std::string unified = CgroupLayout::detect().unified_mount;
    for (const auto& p : paths) {
        struct stat st {};
        if (p.rfind(unified + "/", 0) == 0 && ::stat(p.c_str(), &st) == 0) return st.st_ino;
    }
    return 0;
}

}  // namespace

std::string agent_sandbox_name() { return make_sandbox_name() + "-a"; }

// ---------------------------------------------------------------------------------------------
// Live policy updates.

json Agent::reload_policies(const std::string& only) {
    json out = {{"reloaded", json::array()}, {"failed", json::array()}};
    std::map<std::string, std::shared_ptr<const Policy>> fresh;
    for (auto& [ticket, rec] : records_) {
        if (!rec->egress || rec->state != Record::State::running) continue;
        if (!only.empty() && rec->policy != only) continue;
        try {
            auto& p = fresh[rec->policy];
            if (!p) p = std::make_shared<const Policy>(load_policy_ref(rec->policy, config_.policy_dir));
            rec->egress->reload(*p);
            rec->options.policy = *p;
            write_record(*rec);
            out["reloaded"].push_back({{"sandbox", rec->name}, {"policy", rec->policy}});
        } catch (const Error& e) {
            // A broken edit changes nothing: the sandbox keeps the policy it had.
            fresh.erase(rec->policy);
            out["failed"].push_back({{"sandbox", rec->name}, {"policy", rec->policy}, {"error", e.to_json()}});
            spdlog::error("agent: policy {} not reloaded for {}: {}", rec->policy, rec->name, e.what());
        }
    }
    for (auto& [id, att] : attachments_) {
        std::string name = att->info()["policy"];
        if (!only.empty() && name != only) continue;
        try {
            auto& p = fresh[name];
            if (!p) p = std::make_shared<const Policy>(load_policy_ref(name, config_.policy_dir));
            att->reload(*p);
            out["reloaded"].push_back({{"cgroup", att->path()}, {"policy", name}});
        } catch (const Error& e) {
            fresh.erase(name);
            out["failed"].push_back({{"cgroup", att->path()}, {"policy", name}, {"error", e.to_json()}});
        }
    }
    spdlog::info("agent: reloaded {} sandbox(es){}", out["reloaded"].size(), only.empty() ? "" : " of policy " + only);
    return out;
}

void Agent::op_reload(Conn& conn, ApiRequest& r) {
    if (conn.peer.uid != 0) {
        audit_forbidden(conn, "reload", r.params.value("policy", ""), "only root may reload policies");
        throw Error(ErrorKind::forbidden, "only root may reload policies");
    }
    std::string only = r.params.value("policy", "");
    if (!only.empty()) load_policy_ref(only, config_.policy_dir);  // a bad name or file: an error, nothing changes
    reply(conn, api_result(r.id, reload_policies(only)));
}

// ---------------------------------------------------------------------------------------------
// Crash recovery.

void Agent::recover_sandboxes() {
    std::error_code ec;
    std::string dir = config_.state_dir + "/agent/sandboxes";
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() != ".json") continue;
        json record;
        try {
            std::ifstream in(e.path());
            in >> record;
        } catch (...) {
            spdlog::warn("agent: unreadable sandbox record {}; removed", e.path().string());
            fs::remove(e.path(), ec);
            continue;
        }
        std::string name = record.value("sandbox", "");
        if (name.size() < 2 || name.compare(name.size() - 2, 2, "-a") != 0) continue;  // not an agent's
        try {
            adopt_sandbox(record);
        } catch (const std::exception& ex) {
            spdlog::error("agent: cannot recover sandbox {}: {}", name, ex.what());
        }
    }
}

void Agent::adopt_sandbox(const json& record) {
    std::string name = record.at("sandbox");
    std::vector<std::string> cgroups = record.value("cgroups", std::vector<std::string>{});
    std::string policy_name = record.value("policy", "");
    pid_t pid = record.value("pid", 0);
    std::uint64_t id = cgroup_id_of(cgroups);
    std::string pin = sandbox_pin_root() + "/" + name;
    auto cleanup = [&](const std::string& why) {
        destroy_cgroups(cgroups);
        remove_pinned_enforcement(name);
        remove_tree(config_.state_dir + "/run/" + name);
        std::error_code ec;
        fs::remove(record_path(name), ec);
        spdlog::info("agent: sandbox {} left by a previous agent {}; removed", name, why);
    };
    if (config_.on_restart == AgentConfig::OnRestart::kill) return cleanup("(on_restart: kill)");
    UniqueFd pidfd(pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1);
    if (!pidfd || id == 0 || pinned_policy_id(name) != id) return cleanup("had ended");

    auto rec = std::make_shared<Record>();
    rec->ticket = next_ticket_++;
    rec->name = name;
    rec->policy = policy_name;
    rec->state = Record::State::running;
    rec->owner_uid = record.value("owner_uid", 0u);
    rec->owner_pid = record.value("owner_pid", 0);
    rec->keep = true;
    rec->pid = pid;
    rec->cgroup_paths = cgroups;
    rec->started = Clock::now();
    rec->options.command = record.value("command", std::vector<std::string>{});
    rec->options.name = name;
    std::string file = record.value("policy_file", "");
    try {
        rec->options.policy = load_policy_ref(!file.empty() ? file : policy_name, config_.policy_dir);
    } catch (const Error& e) {
        // Without its policy the sandbox cannot be enforced as it was asked: it ends.
        spdlog::error("agent: policy of sandbox {} unreadable: {}", name, e.what());
        return cleanup("lost its policy");
    }
    rec->egress = std::make_shared<EgressExtension>(rec->options.policy, false, audit_);
    rec->egress->use_shared_events(shared_events_.get());
    rec->egress->adopt(id, name, loop_);
    rec->pidfd = std::move(pidfd);
    rec->control.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    records_[rec->ticket] = rec;
    by_name_[name] = rec->ticket;
    // It runs: it holds a slot like any, even above the caps, and counts in its client's share.
    admission_.adopt(rec->policy, rec->ticket,
                     rec->owner_uid == 0 ? Admission::kNoClient : static_cast<Admission::Client>(rec->owner_uid));
    threads_.fetch_add(1);  // the shutdown waits for its end like for a sandbox thread
    loop_.add(rec->pidfd.get(), EPOLLIN, [this, rec](std::uint32_t) { end_adopted(rec); });
    loop_.add(rec->control.get(), EPOLLIN, [this, rec](std::uint32_t) { signal_adopted(rec); });
    write_record(*rec);
    broadcast({{"event", "lifecycle"}, {"state", "adopted"}, {"sandbox", name}, {"policy", rec->policy},
               {"pid", pid}, {"uid", rec->owner_uid}},
              name, static_cast<long>(rec->owner_uid));
    spdlog::info("agent: adopted sandbox {} (policy {}, pid {}) left by a previous agent", name, rec->policy, pid);
}

void Agent::signal_adopted(const std::shared_ptr<Record>& rec) {
    std::uint64_t n;
    (void)!::read(rec->control.get(), &n, sizeof n);
    int sig = rec->kill_signal.load();
    if (sig == 0) return;
    // Like a hosted sandbox's kill: every process ends now (cgroup.kill), whatever it ignores;
    // the signal asked for is what the report records.
    signal_cgroups(rec->cgroup_paths, SIGKILL);
}

void Agent::end_adopted(const std::shared_ptr<Record>& rec) {
    loop_.remove(rec->pidfd.get());
    loop_.remove(rec->control.get());
    // The main process ended (its exit status went to whoever reaped it): nothing else of the
    // sandbox may outlive it.
    signal_cgroups(rec->cgroup_paths, SIGKILL);
    for (int i = 0; i < 500 && populated(rec->cgroup_paths); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    json extra = json::object();
    rec->egress->unbind(extra);
    destroy_cgroups(rec->cgroup_paths);
    remove_tree(config_.state_dir + "/run/" + rec->name);
    int sig = rec->kill_signal.load();
    json report = {{"status", sig ? "interrupted" : "exited"}, {"sandbox", rec->name}, {"policy", rec->policy},
                   {"adopted", true}, {"exit_code", nullptr}, {"signal", sig ? json(sig) : json(nullptr)}};
    for (auto it = extra.begin(); it != extra.end(); ++it) report[it.key()] = it.value();
    spdlog::info("agent: adopted sandbox {} ended", rec->name);
    on_ended(rec, api_result(rec->request_id, {{"report", report}}), report["status"]);
    threads_.fetch_sub(1);
}

// ---------------------------------------------------------------------------------------------
// Cgroup-scoped deployments held by the agent: it keeps their resolver and audit; they survive
// an agent crash (pinned) and the next agent adopts or removes them like sandboxes.

namespace {

std::string attachment_record(const AgentConfig& config, std::uint64_t id) {
    return config.state_dir + "/agent/attachments/" + std::to_string(id) + ".json";
}

}  // namespace

void Agent::op_attach(Conn& conn, ApiRequest& r) {
    std::string policy_name = r.params["policy"];
    if (conn.peer.uid != 0) {
        audit_forbidden(conn, "attach", policy_name, "only root may attach policies to cgroups");
        throw Error(ErrorKind::forbidden, "only root may attach policies to cgroups");
    }
    Policy policy = load_policy_ref(policy_name, config_.policy_dir);
    bool audit_only = r.params.value("audit_only", false);
    std::string name = r.params.value("name", "");
    // A container started again at once gets its name back: its previous cgroup's attachment
    // goes now rather than at the next sweep.
    if (!name.empty() && attachment_named(name)) sweep_gone_attachments();
    if (!name.empty() && (by_name_.count(name) || attachment_named(name)))
        throw Error(ErrorKind::usage, "an attachment or sandbox is already named " + name, {{"name", name}});
    pid_t pid = r.params.value("pid", 0);
    AttachTarget target = open_attach_target(r.params["cgroup"], pid);
    target.name = name;
    target.container = r.params.value("container", "");
    auto att = std::make_shared<Attachment>(policy, std::move(target), audit_only, audit_, loop_, false);
    attachments_[att->cgroup_id()] = att;
    std::error_code ec;
    fs::create_directories(config_.state_dir + "/agent/attachments", ec);
    ::chmod((config_.state_dir + "/agent/attachments").c_str(), 0700);
    json record = {{"cgroup", att->path()}, {"cgroup_id", att->cgroup_id()}, {"policy", policy_name},
                   {"audit_only", audit_only}};
    if (!name.empty()) record["name"] = name;
    if (!att->container().empty()) record["container"] = att->container();
    write_private_file(attachment_record(config_, att->cgroup_id()), record.dump() + "\n");
    reply(conn, api_result(r.id, att->info()));
}

Attachment* Agent::attachment_named(const std::string& name) const {
    for (const auto& [id, att] : attachments_)
        if (att->name() == name) return att.get();
    return nullptr;
}

void Agent::forget_attachment_metrics(const std::string& name) {
    std::erase_if(metrics_.attachment_denials, [&](const auto& e) { return e.first.first == name; });
}

void Agent::op_detach(Conn& conn, ApiRequest& r) {
    std::string path = r.params["cgroup"];
    if (conn.peer.uid != 0) {
        audit_forbidden(conn, "detach", "", "only root may detach policies from cgroups");
        throw Error(ErrorKind::forbidden, "only root may detach policies from cgroups");
    }
    AttachState state = attach_state(path);
    auto it = attachments_.find(state.cgroup_id);
    if (it == attachments_.end() || state.cgroup_id == 0) {
        detach_cgroup(path);  // one a standalone `mcpwarden attach` holds (or nothing: usage)
        reply(conn, api_result(r.id, {{"detached", path}}));
        return;
    }
    json figures = it->second->detach();
    figures["detached"] = it->second->path();
    forget_attachment_metrics(it->second->name());
    attachments_.erase(it);
    std::error_code ec;
    fs::remove(attachment_record(config_, state.cgroup_id), ec);
    reply(conn, api_result(r.id, figures));
}

// An attachment whose cgroup was removed (a container that ended, a stopped service) holds
// nothing any more: its links went with the cgroup; its pins, resolver and record go now.
void Agent::sweep_gone_attachments() {
    for (auto it = attachments_.begin(); it != attachments_.end();) {
        if (it->second->cgroup_alive()) {
            ++it;
            continue;
        }
        spdlog::info("agent: cgroup {} was removed; detaching policy {}", it->second->path(),
                     it->second->info().value("policy", ""));
        try {
            it->second->detach();
        } catch (const Error& e) {
            spdlog::warn("agent: detaching the removed cgroup {}: {}", it->second->path(), e.what());
        }
        std::error_code ec;
        fs::remove(attachment_record(config_, it->first), ec);
        forget_attachment_metrics(it->second->name());
        it = attachments_.erase(it);
    }
}

void Agent::recover_attachments() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(config_.state_dir + "/agent/attachments", ec)) {
        json rec;
        try {
            std::ifstream in(e.path());
            in >> rec;
            std::string path = rec.at("cgroup");
            AttachState state = attach_state(path);
            if (!state.attached || state.cgroup_id != rec.value("cgroup_id", 0ull)) {
                fs::remove(e.path(), ec);  // the cgroup went away, or someone detached it
                continue;
            }
            if (config_.on_restart == AgentConfig::OnRestart::kill) {
                detach_cgroup(path);
                fs::remove(e.path(), ec);
                spdlog::info("agent: detached {} left by a previous agent (on_restart: kill)", path);
                continue;
            }
            Policy policy = load_policy_ref(rec.at("policy"), config_.policy_dir);
            // Its processes' network namespace is looked up again: the resolver comes back there.
            AttachTarget target = open_attach_target(path);
            target.name = rec.value("name", "");
            target.container = rec.value("container", "");
            auto att = std::make_shared<Attachment>(Attachment::Adopt{}, policy, std::move(target),
                                                    rec.value("audit_only", false), audit_, loop_, false);
            attachments_[att->cgroup_id()] = att;
            spdlog::info("agent: adopted the attachment {} of policy {} on {}", att->name(), policy.name, path);
        } catch (const std::exception& ex) {
            // Unreadable or its policy gone: the pins stay (fail closed) until detach.
            spdlog::error("agent: cannot recover attachment {}: {}", e.path().string(), ex.what());
        }
    }
}

}  // namespace mcpwarden
