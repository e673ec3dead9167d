// SPDX-License-Identifier: Apache-2.0
// The only code that talks to libbpf: loads the egress programs once and pins them in bpffs,
// attaches them to sandbox cgroups with BPF links, writes and removes map entries, and owns
// each sandbox's audit ring buffer. Policy semantics live in egress_compiler.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include "egress_compiler.h"
#include "fd.h"
#include "mcpwarden.h"

struct ring_buffer;

namespace mcpwarden {

// The pinned programs and maps, shared by every sandbox on the host.
class BpfObjects {
public:
    // Opens the pinned objects of this build, loading and pinning them first if absent
    // (under a lock, so concurrent first runs load once). bpffs is mounted at /sys/fs/bpf when
    // missing. Throws Error(sandbox_unavailable) naming the missing kernel feature.
    // The objects stay pinned while any process holds them (a shared flock on bpffs): the last
    // one to let go removes the pins, unless a sandbox's links are still pinned (it outlived
    // its holder and keeps enforcing). So an idle host keeps nothing of mcpwarden, and a run
    // that starts while none runs pays the verifier (about 45 ms here).
    static std::shared_ptr<BpfObjects> open();
    ~BpfObjects();
    BpfObjects(const BpfObjects&) = delete;
    BpfObjects& operator=(const BpfObjects&) = delete;

    int prog(const std::string& name) const;  // "connect4", "connect6", "sendmsg4", ...
    int map(const std::string& name) const;   // "rules4", "rules6", "portsets", "events", ...
    const std::string& pin_dir() const { return pin_dir_; }

    // bpffs root of this build's objects (/sys/fs/bpf/mcpwarden/<object hash>).
    static std::string pin_root();

private:
    BpfObjects() = default;
    std::string pin_dir_;
    std::vector<std::pair<std::string, UniqueFd>> progs_, maps_;
    UniqueFd lock_;  // shared flock on bpffs: the objects are in use
};

// Where the sandbox's DNS goes (0 ports = no resolver: port 53 is then like any port).
struct DnsTarget {
    std::uint32_t ip4 = 0;  // network order
    std::uint16_t port4 = 0, port6 = 0;
};

struct EgressCounters {
    std::uint64_t denied = 0, audited = 0, lost = 0;
    // Events the kernel's audit rate limit left out (never in the ring), by event kind.
    std::uint64_t suppressed = 0, suppressed_socket = 0;
};

// Audit ring buffers shared by many sandboxes (the agent's): a few slots of the pool, claimed
// once by their owner and read by one consumer. Each sandbox writes into one of them (chosen by
// its policy id); events carry the policy id, so consume() hands each to the handler routed for
// it. A restarted owner with the same `owner` tag takes over the slots its dead predecessor held
// (their pending events are delivered once the adopted sandboxes are routed).
class SharedEventRing {
public:
    using EventHandler = std::function<void(const mw_event&)>;
    SharedEventRing(std::shared_ptr<BpfObjects> objects, const std::string& owner, std::size_t slots);
    ~SharedEventRing();
    SharedEventRing(const SharedEventRing&) = delete;
    SharedEventRing& operator=(const SharedEventRing&) = delete;

    int events_fd() const;  // epoll-able; call consume() when readable
    void consume();         // from any thread; handlers run under the ring's lock
    // The sandbox_state.event_slot value (1 + slot) for a policy id.
    std::uint32_t slot_for(std::uint64_t policy_id) const;
    void route(std::uint64_t policy_id, EventHandler handler);
    // After it returns, the handler of policy_id is not running and is not called again.
    void unroute(std::uint64_t policy_id);
    std::uint64_t unrouted() const { return unrouted_; }  // events of no routed sandbox
    std::size_t slots() const { return slots_.size(); }

private:
    std::shared_ptr<BpfObjects> objects_;
    std::vector<std::uint32_t> slots_;
    std::vector<UniqueFd> rings_;
    struct ring_buffer* rb_ = nullptr;
    mutable std::mutex mutex_;
    std::map<std::uint64_t, EventHandler> routes_;
    std::uint64_t unrouted_ = 0;
};

// Enforcement on one sandbox cgroup. Destruction removes everything of this sandbox: links,
// map entries, its ring buffer.
class CgroupEnforcer {
public:
    using EventHandler = std::function<void(const mw_event&)>;

    // Attaches every program to the cgroup (BPF links: multi-attach, a child cannot override
    // or detach them), then installs the compiled rules and binds the policy id in the
    // cgroup's storage. Until bound, the programs deny everything (fail closed).
    //
    // With a sandbox name, the links are also pinned (in <bpffs>/mcpwarden/sandboxes/<name>), so
    // enforcement outlives a crash of mcpwarden until the stale sandbox is swept.
    CgroupEnforcer(std::shared_ptr<BpfObjects> objects, int cgroup_fd, std::uint64_t cgroup_id,
                   const CompiledEgress& rules, bool audit_only, EventHandler on_event,
                   const std::string& pin_name = "", DnsTarget dns = {},
                   SharedEventRing* shared = nullptr);

    // Takes over the enforcement a predecessor (a crashed agent) pinned as pin_name on the
    // cgroup: its links, event slot, cgroup storage and rules stay in force throughout; the
    // rules become `rules` (entries the predecessor learned from DNS are kept, see
    // adopted_learned()). Throws Error(sandbox_unavailable) when nothing is pinned there.
    struct Adopt {};
    CgroupEnforcer(Adopt, std::shared_ptr<BpfObjects> objects, std::uint64_t cgroup_id,
                   const CompiledEgress& rules, bool audit_only, EventHandler on_event,
                   const std::string& pin_name, SharedEventRing* shared = nullptr);
    ~CgroupEnforcer();
    CgroupEnforcer(const CgroupEnforcer&) = delete;

    // For a sandbox cgroup (one mcpwarden made and removes): attaches the backstop programs
    // without links. They stay with the cgroup, after release() and after a crash, until the
    // kernel frees it with its last socket, and deny the sockets made in it once release() (or a
    // sweep of its pins) marked it ended: a socket passed out of the sandbox keeps no freedom
    // its sandbox did not have. Throws Error(sandbox_unavailable).
    void attach_backstops(int cgroup_fd);
    CgroupEnforcer& operator=(const CgroupEnforcer&) = delete;

    int events_fd() const;  // epoll-able; call consume_events() when readable
    void consume_events();
    // No more events reach the handler (shared ring); call it holding no lock the handler takes.
    void stop_events();
    EgressCounters counters() const;
    // An address learned from DNS: written before the answer is released; dropped at expiry.
    void put_learned(const LearnedEntry& entry);
    void drop_learned(const LearnedEntry& entry);
    // Live policy update: the rules become `rules` plus the learned entries (which stand over
    // compiled entries of the same key). New entries are written longest prefix first, then
    // entries no longer present are deleted shortest prefix first, and the new port sets get
    // ids the old entries do not use: every lookup during the swap decides as the old or as
    // the new policy, never as a mix of both.
    void update_rules(const CompiledEgress& rules, const std::vector<LearnedEntry>& learned = {},
                      bool audit_only = false);
    // Host entries (/32, /128) found under the policy id at adoption that the rules do not
    // account for: addresses the predecessor learned from DNS.
    const std::vector<LearnedEntry>& adopted_learned() const { return adopted_learned_; }
    // The resolver the kernel redirects port 53 to (cgroup storage).
    DnsTarget dns_target() const;
    void set_dns_target(DnsTarget dns);
    std::uint64_t cgroup_id() const { return cgroup_id_; }
    void release();

private:
    void install(const CompiledEgress& rules);
    void claim_event_slot(const std::string& name);
    static constexpr std::uint32_t kNoSlot = 0xffffffffu;
    void remove(const CompiledEgress& rules);
    void open_ring(const std::string& name, bool adopt);
    void use_shared_ring(const std::string& name, bool adopt);

    // Keys written by put_learned (and not dropped since), so a swap knows them.
    std::vector<std::string> learned_keys_;
    std::vector<mw_portset_key> learned_sets_;
    std::uint32_t set_base_ = 0;  // offset of the compiled port set ids currently installed
    std::vector<mw_portset_key> retired_sets_;  // replaced by the last update_rules, deleted by the next
    std::vector<LearnedEntry> adopted_learned_;

    std::shared_ptr<BpfObjects> objects_;
    std::uint64_t cgroup_id_;
    CompiledEgress installed_;
    CompiledEgress compiled_;
    std::vector<UniqueFd> links_;  // only when not pinned; pinned links are held by their pins
    std::string link_pin_dir_;
    UniqueFd ringbuf_;
    struct ring_buffer* rb_ = nullptr;
    EventHandler on_event_;
    std::uint32_t event_slot_ = kNoSlot;
    bool events_live_ = false;
    bool released_ = false;
    SharedEventRing* shared_ = nullptr;  // events go to a shared ring (no slot of its own)
};

// After a crash: removes the link pins and map entries of sandboxes whose owner is gone and
// whose cgroup no longer exists (call it right after sweep_stale_sandboxes removed them; one
// whose cgroup is still there keeps its pins, so no process of it runs unconfined). Returns
// how many were removed.
int sweep_stale_enforcement();

// The same for one sandbox, whoever made it (an agent's, which sweep_stale_enforcement leaves
// to the next agent): its pins and entries go unless its cgroup may still exist. Returns
// whether they went.
bool sweep_enforcement_of(const std::string& pin_name);

// Where pinned links of running sandboxes live.
std::string sandbox_pin_root();

// Rule-map entries, port sets and event slots held under a policy id (0 once it is removed).
std::size_t count_policy_entries(std::uint64_t policy_id);

// Whether enforcement is pinned under this name, and the policy id it was bound with (0 = none).
std::uint64_t pinned_policy_id(const std::string& pin_name);

// Removes what a CgroupEnforcer pinned under this name (links: the programs detach; rules;
// event slot) without an instance, for an owner that is gone. Returns false if nothing was there.
bool remove_pinned_enforcement(const std::string& pin_name);

}  // namespace mcpwarden
