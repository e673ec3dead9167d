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
struct AttachTarget {
    std::string path;
    UniqueFd fd;
    std::uint64_t id = 0;
};
AttachTarget open_attach_target(const std::string& path);

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
    // Whether the cgroup still exists (it may be removed under us: a stopped service).
    bool cgroup_alive() const;

private:
    void record_holder();
    void drop_holder();

    AttachTarget target_;
    std::string policy_name_;
    std::shared_ptr<EgressExtension> egress_;
    std::string holder_dir_;
    bool detached_ = false;
};

// Removes an attachment whose holder is gone (or asks a live holder to detach: SIGTERM, then
// waits up to `wait`). Throws Error(usage) when nothing is attached there.
void detach_cgroup(const std::string& cgroup_path, std::chrono::milliseconds wait = std::chrono::seconds(10));

}  // namespace mcpwarden
