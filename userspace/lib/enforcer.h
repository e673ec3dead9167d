// The only code that talks to libbpf: loads the egress programs once and pins them in bpffs,
// attaches them to sandbox cgroups with BPF links, writes and removes map entries, and owns
// each sandbox's audit ring buffer. Policy semantics live in egress_compiler.
#pragma once

#include <cstdint>
#include <functional>
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
    static std::shared_ptr<BpfObjects> open();

    int prog(const std::string& name) const;  // "connect4", "connect6", "sendmsg4", ...
    int map(const std::string& name) const;   // "rules4", "rules6", "portsets", "events", ...
    const std::string& pin_dir() const { return pin_dir_; }

    // bpffs root of this build's objects (/sys/fs/bpf/mcpwarden/<object hash>).
    static std::string pin_root();

private:
    std::string pin_dir_;
    std::vector<std::pair<std::string, UniqueFd>> progs_, maps_;
};

// Where the sandbox's DNS goes (0 ports = no resolver: port 53 is then like any port).
struct DnsTarget {
    std::uint32_t ip4 = 0;  // network order
    std::uint16_t port4 = 0, port6 = 0;
};

struct EgressCounters {
    std::uint64_t denied = 0, audited = 0, lost = 0;
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
                   const std::string& pin_name = "", DnsTarget dns = {});
    ~CgroupEnforcer();
    CgroupEnforcer(const CgroupEnforcer&) = delete;
    CgroupEnforcer& operator=(const CgroupEnforcer&) = delete;

    int events_fd() const;  // epoll-able; call consume_events() when readable
    void consume_events();
    EgressCounters counters() const;
    // An address learned from DNS: written before the answer is released; dropped at expiry.
    void put_learned(const LearnedEntry& entry);
    void drop_learned(const LearnedEntry& entry);
    // Replaces the rules (same policy id) — live policy updates.
    void update_rules(const CompiledEgress& rules);
    void release();

private:
    void install(const CompiledEgress& rules);
    void claim_event_slot(const std::string& name);
    static constexpr std::uint32_t kNoSlot = 0xffffffffu;
    void remove(const CompiledEgress& rules);

    std::shared_ptr<BpfObjects> objects_;
    std::uint64_t cgroup_id_;
    CompiledEgress installed_;
    CompiledEgress compiled_;
    std::vector<UniqueFd> links_;
    std::string link_pin_dir_;
    UniqueFd ringbuf_;
    struct ring_buffer* rb_ = nullptr;
    EventHandler on_event_;
    std::uint32_t event_slot_ = kNoSlot;
    bool events_live_ = false;
    bool released_ = false;
};

// After a crash: removes the link pins and map entries of sandboxes whose owner is gone (call
// it after their cgroups were swept, so no process of theirs runs unconfined). Also removes pin
// directories of older builds that no link uses any more. Returns how many were removed.
int sweep_stale_enforcement();

// Where pinned links of running sandboxes live.
std::string sandbox_pin_root();

}  // namespace mcpwarden
