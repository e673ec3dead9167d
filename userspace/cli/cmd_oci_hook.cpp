// SPDX-License-Identifier: Apache-2.0
// mcpwarden oci-hook: an OCI runtime hook (createRuntime, poststop) that puts the policy a
// container's annotation names on the container's cgroup, through the agent, before the
// container's first instruction (issue 15; deploy/oci-hooks.d/mcpwarden.json).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include <spdlog/spdlog.h>

#include "agent_client.h"
#include "attachment.h"
#include "cgroup.h"
#include "commands.h"
#include "error.h"
#include "fd.h"
#include "oci.h"

namespace mcpwarden {
namespace {

// The container's cgroup directory on the v2 mount, from a cgroup path ("/a/b").
std::string cgroup_dir(const std::string& path) {
    CgroupLayout layout = CgroupLayout::detect();
    if (layout.unified_mount.empty())
        throw Error(ErrorKind::sandbox_unavailable, "no cgroup v2 hierarchy is mounted: nothing to attach a policy to");
    std::string rel = path;
    if (layout.unified_root != "/" && rel.rfind(layout.unified_root, 0) == 0) rel = rel.substr(layout.unified_root.size());
    return layout.unified_mount + (rel.empty() || rel.front() != '/' ? "/" : "") + rel;
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

class OciHookCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "oci-hook",
            "An OCI runtime hook: reads the container's state on stdin and, when the container "
            "is annotated io.mcpwarden.policy=NAME, asks the agent to attach that policy to the "
            "container's cgroup (createRuntime) or to detach it (poststop).");
        app_->add_option("stage", stage_,
                         "The hook stage: createRuntime (attach) or poststop (detach); without it, "
                         "taken from the state's status (creating or stopped)")
            ->check(CLI::IsMember({"createRuntime", "poststop"}));
        app_->add_option("--agent", agent_, "The agent's socket (also $MCPWARDEN_AGENT)");
        app_->footer(
            "Without the annotation the hook does nothing and exits 0. With it, createRuntime "
            "fails (and the runtime does not start the container) when the policy is unknown, "
            "the agent does not answer, or the attach is refused: fail closed. "
            "io.mcpwarden.audit-only=true logs what the policy would deny instead. The hook "
            "file for podman and CRI-O is deploy/oci-hooks.d/mcpwarden.json (installed under "
            "share/containers/oci/hooks.d). Exit status: 0 done or nothing to do, 65 bad state or "
            "annotation, 64 attach refused (the root cgroup, already attached), 78 unknown or "
            "invalid policy, 125 no agent answers or the policy cannot be enforced.");
    }

    int execute() override {
        std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        OciState state = parse_oci_state(text);
        auto want = oci_request(state);
        if (!want) return 0;  // not ours
        if (stage_.empty()) {
            if (state.status == "creating" || state.status == "created") {
                stage_ = "createRuntime";
            } else if (state.status == "stopped") {
                stage_ = "poststop";
            } else {
                throw Error(ErrorKind::usage, "the container's status is \"" + state.status +
                                                  "\": give the stage (createRuntime or poststop) as an argument");
            }
        }
        try {
            if (stage_ == "createRuntime") return attach(state, *want);
            return detach(state);
        } catch (const Error& e) {
            // The runtime shows the hook's stderr with its refusal to start the container.
            throw Error(e.kind(),
                        "container " + short_id(state.id) + " (policy " + want->policy + "): " + e.what() +
                            (stage_ == "createRuntime" ? "; the container is not started (fail closed)" : ""),
                        e.details());
        }
    }

private:
    AgentClient agent() {
        std::string path = agent_socket_path(agent_);
        auto client = AgentClient::connect(path);
        if (!client)
            throw Error(ErrorKind::sandbox_unavailable,
                        "no mcpwarden agent answers on " + path + " (start it: systemctl start mcpwarden-agent)");
        return std::move(*client);
    }

    int attach(const OciState& state, const OciRequest& want) {
        if (state.pid <= 0) throw Error(ErrorKind::input_invalid, "the OCI state has no pid at createRuntime");
        std::string proc_cgroup;
        if (!read_file("/proc/" + std::to_string(state.pid) + "/cgroup", proc_cgroup))
            throw Error(ErrorKind::input_invalid, "the container's process " + std::to_string(state.pid) + " is gone");
        std::string dir = cgroup_dir(unified_cgroup_of(proc_cgroup));
        AgentClient client = agent();
        // The attachment is named by the container's short id (audit, ps, metrics); the
        // container's pid tells the agent which network namespace its resolver belongs in.
        nlohmann::json req = {{"v", 1}, {"id", 1}, {"op", "attach"}, {"cgroup", dir}, {"policy", want.policy},
                              {"audit_only", want.audit_only}, {"container", state.id}, {"pid", state.pid}};
        if (valid_attachment_name(short_id(state.id))) req["name"] = short_id(state.id);
        client.send(req);
        auto result = client.result(1);
        result["container"] = state.id;
        std::cout << result.dump() << std::endl;
        return 0;
    }

    // At poststop the container's processes are gone and the runtime may have removed its
    // cgroup already (the agent notices that within a second and detaches itself).
    int detach(const OciState& state) {
        std::string config;
        if (state.bundle.empty() || !read_file(state.bundle + "/config.json", config)) return 0;
        std::string path = oci_cgroups_path(config);
        if (path.empty()) return 0;
        std::string dir = cgroup_dir(expand_cgroups_path(path));
        std::error_code ec;
        if (!std::filesystem::is_directory(dir, ec)) return 0;
        AgentClient client = agent();
        client.send({{"v", 1}, {"id", 1}, {"op", "detach"}, {"cgroup", dir}});
        try {
            std::cout << client.result(1).dump() << std::endl;
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::usage) throw;  // nothing attached there any more
        }
        return 0;
    }

    std::string stage_, agent_;
};

}  // namespace

std::unique_ptr<Command> make_oci_hook_command() { return std::make_unique<OciHookCommand>(); }

}  // namespace mcpwarden
