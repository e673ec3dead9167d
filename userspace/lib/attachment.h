// SPDX-License-Identifier: Apache-2.0
// Cgroup-scoped deployments: a policy, its DNS redirection and audit put on a cgroup someone
// else created (a systemd service's, a container's) without spawning anything. The processes
// already inside are enforced from their next socket operation on.
//
// An attachment is pinned like a sandbox (<bpffs>/mcpwarden/sandboxes/cg-<cgroup id>), so it
// keeps enforcing when its holder dies; it is removed only by detach (or adopted by an agent).
// Its holder records itself in the pin directory (holder-<pid>-<start time>), so a standalone
// `mcpwarden detach` can ask a foreground `mcpwarden attach` to finish.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "egress_extension.h"
#include "event_loop.h"
#include "fd.h"
#include "policy.h"

namespace mcpwarden {

// The pin name of the attachment on a cgroup id.
std::string attachment_pin_name(std::uint64_t cgroup_id);

// A cgroup an attachment may go on: an existing directory of the unified (v2) hierarchy, not
// the root, not one of mcpwarden's sandboxes, and not containing mcpwarden itself (its
// resolver would then be confined by the policy it serves). Throws Error(usage) saying why.
//
// The network namespace of its processes (the cgroup's and its descendants', from
// /proc/PID/ns/net) is where the attachment's resolver listens: the kernel redirects their
// port-53 flows to 127.0.0.1 of their own namespace. When it is not mcpwarden's own (a
// container on its own network) `netns` holds it. Refused (Error(usage)) when the processes are
// in more than one namespace, or `pid` (a process the caller knows is inside: the OCI hook's
// container pid; 0 = none) is not in the cgroup; Error(sandbox_unavailable) when a process's
// namespace cannot be opened. A cgroup without processes gets mcpwarden's own namespace.
struct AttachTarget {
    std::string path;
    UniqueFd fd;
    std::uint64_t id = 0;
    UniqueFd netns;              // the processes' network namespace, if not mcpwarden's own
    std::uint64_t netns_id = 0;  // its inode number (0: mcpwarden's own)
    // How audit lines ("sandbox"), ps and metrics call the attachment ("" = its pin name,
    // cg-<cgroup id>), and the container it is for ("" = none): set by the OCI hook.
    std::string name, container;
};
AttachTarget open_attach_target(const std::string& path, pid_t pid = 0);

// Whether `name` may name an attachment: 1 to 64 of [A-Za-z0-9_.-], not starting with "s-"
// or "cg-" (the forms of sandbox and pin names).
bool valid_attachment_name(const std::string& name);

// Whether a policy is attached to the cgroup (pinned), and who holds it.
struct AttachState {
    bool attached = false;
    std::uint64_t cgroup_id = 0;
    pid_t holder = 0;  // a live process holding the resolver and audit, 0 if none
};
AttachState attach_state(const std::string& cgroup_path);

class Attachment {
public:
    // Attaches (refuses, Error(usage), when the cgroup already has one). The audit ring is
    // read through loop. record_holder: write this process as the holder.
    Attachment(const Policy& policy, AttachTarget target, bool audit_only,
               std::shared_ptr<spdlog::logger> audit, EventLoop& loop, bool record_holder = true);
    // Takes over an attachment a crashed holder left (an agent's restart).
    struct Adopt {};
    Attachment(Adopt, const Policy& policy, AttachTarget target, bool audit_only,
               std::shared_ptr<spdlog::logger> audit, EventLoop& loop, bool record_holder = true);
    // Detaches: links, pins, rules, learned addresses, the cgroup's storage and the resolver.
    ~Attachment();
    Attachment(const Attachment&) = delete;
    Attachment& operator=(const Attachment&) = delete;

    void reload(const Policy& policy) { egress_->reload(policy); }
    // Detaches now and returns the figures (egress_denied, dns, ...); idempotent.
    nlohmann::json detach();
    nlohmann::json info() const;
    const std::string& path() const { return target_.path; }
    std::uint64_t cgroup_id() const { return target_.id; }
    const std::string& name() const { return name_; }
    const std::string& container() const { return target_.container; }
    std::uint64_t netns_id() const { return target_.netns_id; }
    // Whether the cgroup still exists (it may be removed under us: a stopped service).
    bool cgroup_alive() const;

private:
    void prepare(const std::string& pin);  // the name, the label and the namespace, before bind/adopt
    void record_holder();
    void drop_holder();

    AttachTarget target_;
    std::string name_, policy_name_;
    std::shared_ptr<EgressExtension> egress_;
    std::string holder_dir_;
    bool detached_ = false;
};

// Removes an attachment whose holder is gone (or asks a live holder to detach: SIGTERM, then
// waits up to `wait`). Throws Error(usage) when nothing is attached there.
void detach_cgroup(const std::string& cgroup_path, std::chrono::milliseconds wait = std::chrono::seconds(10));

}  // namespace mcpwarden
