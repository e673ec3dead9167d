// SPDX-License-Identifier: Apache-2.0
// Egress enforcement as part of a sandboxed run: binds the policy to the sandbox cgroup before
// the child exists, turns kernel denial events into audit lines, and reports the counts.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "dns_proxy.h"
#include "egress_compiler.h"
#include "enforcer.h"
#include "sandbox.h"

namespace mcpwarden {

// Where audit lines go: one JSON object per line. To a file, opened now (open_output: no link
// followed, no foreign file written); "" = stderr, each line prefixed with kAuditPrefix.
inline constexpr const char* kAuditPrefix = "mcpwarden-audit: ";
std::shared_ptr<spdlog::logger> make_audit_logger(const std::string& path);

// The rules a refusal suggests (what note_refusal records; exposed for tests). A name the
// sandbox's resolver refused gets a host rule for 443/tcp: the port it wanted is not known
// before it connects, and HTTPS is what servers fetch. A connection the default deny refused
// (`event` is its event_json, `rule` the event's) gets a rule with its port and protocol, for
// the name its address was learned under, or else for the address alone (cidr /32 or /128);
// in a reserved range always the address, as only a rule naming one inside it opens the range.
// One a deny rule or the socket checks refused gets none: no allow rule would open it.
Refusal refused_name(const std::string& name);
Refusal denied_connection(const nlohmann::json& event, std::uint32_t rule);

class EgressExtension : public SandboxExtension {
public:
    EgressExtension(const Policy& policy, bool audit_only, std::shared_ptr<spdlog::logger> audit);
    ~EgressExtension() override;

    void before_spawn(Sandbox& sandbox) override;
    void on_end(Sandbox& sandbox, RunReport& report) override;
    std::uint64_t egress_denied() const override;
    std::uint64_t dns_refused() const override { return dns_refused_; }
    std::vector<Refusal> refused_destinations() const override;

    // The same without a Sandbox (cgroup-scoped deployments, an agent's adopted sandboxes):
    // bind puts the policy, the DNS redirection and audit on a cgroup, pinned as `name`;
    // adopt takes over what a crashed predecessor pinned as `name` (its resolver restarts on
    // the same address when it can); unbind removes exactly what bind or adopt installed and
    // puts the figures into `extra`. The audit ring is read through `loop`.
    void bind(int cgroup_fd, std::uint64_t cgroup_id, const std::string& name, EventLoop& loop);
    void adopt(std::uint64_t cgroup_id, const std::string& name, EventLoop& loop);
    void unbind(nlohmann::json& extra);
    // Before bind/adopt: the sandbox's denials come through `ring` (shared with other sandboxes,
    // read by its owner, which outlives the binding) instead of a ring buffer of its own.
    void use_shared_events(SharedEventRing* ring) { shared_events_ = ring; }
    // Before bind/adopt: the resolver's sockets are made in this network namespace (a
    // container's; the descriptor is used only during bind/adopt), -1 = the caller's.
    void use_netns(int netns_fd) { netns_fd_ = netns_fd; }
    // The name audit lines give the sandbox ("sandbox"): a container's id for an attachment
    // the OCI hook made; by default the pin name.
    void set_label(std::string label) { label_ = std::move(label); }
    const std::string& label() const { return label_.empty() ? sandbox_name_ : label_; }

    // Live policy update: from the next connection on, the cgroup may reach what `policy`
    // allows; its resolver answers by the new host rules, and addresses learned for names the
    // new policy no longer allows leave the allow-list. Throws Error; on a throw the old
    // policy stays in force (or, if the kernel refused a write midway, the new one partly).
    void reload(const Policy& policy);
    std::shared_ptr<const Policy> policy() const;
    const std::string& name() const { return sandbox_name_; }
    DnsTarget dns_target() const;

    // The audit line of one kernel event (exposed for tests).
    nlohmann::json event_json(const mw_event& e) const;

    // The resolver's hooks (also driven directly by tests).
    bool admit(const std::string& name, const std::vector<std::uint32_t>& rules,
               const std::vector<DnsAddress>& addresses);
    void expire(std::chrono::steady_clock::time_point now);

private:
    struct Learned {
        LearnedEntry entry;
        std::vector<std::uint32_t> rules;
        std::string name;
        std::chrono::steady_clock::time_point expiry;
        std::set<std::string> names;  // every name it was learned for (reload re-checks them)
        Cidr address;
    };
    void audit_line(nlohmann::json j);
    void audit_event(const mw_event& e);
    // Whether one more audit line may be written now (the rate limit); a suppressed one is
    // counted, and at most once a second a summary line says how many were.
    bool audit_admit(const std::string& kind);
    void audit_summary(const std::map<std::string, std::uint64_t>& by_event);
    // The kernel's rate limit (mcpwarden.h) leaves events out of the ring; what it counted joins
    // the window of suppressed lines: looked at once a second by the resolver thread's tick, and
    // once more, `final`, at the end of the sandbox.
    void poll_kernel_suppressed(std::chrono::steady_clock::time_point now);
    void audit_kernel_suppressed(const EgressCounters& c, std::chrono::steady_clock::time_point now, bool final);
    void note_refusal(Refusal r);  // from the resolver thread or the event loop
    mw_event last_refused_{};  // the event loop's last denial (audit_event)
    DnsProxy::Hooks dns_hooks();
    std::shared_ptr<const CompiledEgress> compiled() const;

    mutable std::mutex policy_mutex_;  // policy_ and compiled_ are swapped by reload
    std::shared_ptr<const Policy> policy_;
    bool audit_only_flag_;  // --audit-only; the policy's own flag may change at reload
    bool audit_only_;
    std::shared_ptr<spdlog::logger> audit_;
    std::string sandbox_name_, label_;
    int netns_fd_ = -1;
    std::shared_ptr<const CompiledEgress> compiled_;
    std::unique_ptr<CgroupEnforcer> enforcer_;
    std::unique_ptr<DnsProxy> dns_;
    std::mutex learned_mutex_;
    std::map<std::string, Learned> learned_;      // by address bytes
    // address bytes -> the name it was learned for, and since when (CLOCK_BOOTTIME, the
    // clock of mw_event.time_ns): a denial from before the learning is not named, however late
    // its event is read.
    struct LearnedName {
        std::string name;
        std::uint64_t since_ns = 0;
    };
    std::map<std::string, LearnedName> names_;
    // No learned address expires before this (expiries only grow; new ones lower it).
    std::chrono::steady_clock::time_point next_expiry_ = std::chrono::steady_clock::time_point::max();
    std::uint32_t next_set_id_ = 1u << 24;        // portsets of learned entries
    std::vector<std::pair<mw_portset_key, mw_portset>> replaced_sets_;
    std::uint64_t learned_total_ = 0, answers_blocked_ = 0;
    DnsProxy::Stats dns_final_{};
    EventLoop* loop_ = nullptr;
    int events_fd_ = -1;
    std::int64_t boot_to_real_ns_ = 0;
    std::atomic<std::uint64_t> events_seen_{0};
    // Audit rate limit. The kernel applies it to denials before they become events, so a
    // flooding sandbox costs its consumer nothing per denial over it; this one, with the same
    // numbers, bounds the lines of what still arrives (DNS refusals, and the few events CPUs
    // racing for the kernel's last token let through).
    static constexpr double kAuditBurst = MW_AUDIT_BURST, kAuditPerSecond = MW_AUDIT_PER_SECOND;
    std::mutex audit_mutex_;
    double audit_tokens_ = kAuditBurst;
    std::chrono::steady_clock::time_point audit_refilled_ = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point audit_window_start_{};
    std::chrono::steady_clock::time_point audit_summarised_{};  // the last audit_suppressed line
    std::map<std::string, std::uint64_t> audit_suppressed_window_;  // by event kind
    std::uint64_t audit_suppressed_total_ = 0;
    // The kernel's suppressed counts already in a window (the sandbox state's counts at adoption:
    // the predecessor summarised those).
    std::uint64_t kernel_summarised_ = 0, kernel_summarised_socket_ = 0;
    std::chrono::steady_clock::time_point kernel_polled_{};  // resolver thread only
    SharedEventRing* shared_events_ = nullptr;
    EgressCounters final_{};
    std::atomic<std::uint64_t> dns_refused_{0};
    mutable std::mutex refusals_mutex_;
    std::vector<Refusal> refusals_;  // at most kMaxRefusals
    static constexpr std::size_t kMaxRefusals = 16;
};

}  // namespace mcpwarden
