/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The only header shared by the BPF programs and the C++ side: plain fixed-width types,
 * no kernel or libc types. Layout is checked on the C++ side with static_asserts
 * (userspace/lib/bpf_layout_check.cpp).
 *
 * Rule semantics (compiled by userspace/lib/egress_compiler.cpp):
 *
 *   One LPM trie per address family serves every sandbox. A key is
 *   {prefixlen, policy id (8 bytes, big-endian), address}; prefixlen counts the 64 policy-id
 *   bits plus the network bits, so a lookup never crosses into another sandbox's rules.
 *   Each entry's value is complete for its prefix: it already merges every rule of every
 *   covering prefix, so the longest match alone decides. Per protocol (TCP, UDP) it holds the
 *   port ranges denied and the port ranges allowed, each with the rule that put it there.
 *
 *   Decision for (address, port, protocol), after IPv4-mapped IPv6 became IPv4 and 0.0.0.0 /
 *   :: became the loopback address they reach:
 *     no entry                       -> deny (default deny)
 *     port in the entry's deny list  -> deny (that rule)
 *     port in the entry's allow list -> allow
 *     otherwise                      -> deny (default deny)
 *
 *   Example: allow 10.0.0.0/8 ports 443; deny 10.1.0.0/16 ports 443; allow 10.1.2.0/24 port 80
 *     10.9.9.9:443 -> entry 10.0.0.0/8  (allow 443)                     -> allowed
 *     10.1.9.9:443 -> entry 10.1.0.0/16 (deny 443, allow 443)           -> denied, deny rule
 *     10.1.2.3:80  -> entry 10.1.2.0/24 (deny 443, allow 443 + 80)      -> allowed
 *     10.1.2.3:22  -> entry 10.1.2.0/24                                 -> default deny
 *
 *   Reserved ranges (loopback, link-local, private, multicast, ...) get entries of their own
 *   that an allow rule only reaches when its network lies inside the range: "allow 0.0.0.0/0"
 *   does not open 127.0.0.1 or 169.254.169.254; "allow 127.0.0.1/32 port 8080" does.
 */
#ifndef MCPWARDEN_SHARED_H
#define MCPWARDEN_SHARED_H

#ifdef __cplusplus
#include <cstdint>
typedef std::uint8_t mw_u8;
typedef std::uint16_t mw_u16;
typedef std::uint32_t mw_u32;
typedef std::uint64_t mw_u64;
#else
typedef unsigned char mw_u8;
typedef unsigned short mw_u16;
typedef unsigned int mw_u32;
typedef unsigned long long mw_u64;
#endif

/* Per-sandbox state in BPF_MAP_TYPE_CGROUP_STORAGE, keyed by the cgroup id alone so every
 * program attached to the sandbox cgroup shares one value. Zero-initialised by the kernel when
 * the first program is attached: policy_id 0 means "no policy bound yet" = deny everything. */
struct mw_sandbox_state {
    mw_u64 policy_id;  /* = the sandbox cgroup id; selects its rules */
    mw_u32 flags;      /* MW_SANDBOX_* */
    mw_u32 event_slot; /* 1 + index of the sandbox's ring buffer in `events`; 0 = none */
    mw_u64 denied;     /* denials so far (atomic), independent of lost events */
    mw_u64 audited;    /* would-be denials let through in audit-only mode */
    mw_u64 lost;       /* events of this sandbox the ring buffer could not take */
    /* mcpwarden's resolver for this sandbox: every port-53 flow is redirected here. */
    mw_u32 dns_ip4;    /* network order (127.0.0.1) */
    mw_u16 dns_port4;  /* host order; 0 = no resolver: port 53 is denied like any port */
    mw_u16 dns_port6;  /* on ::1; 0 = IPv6 sockets are sent to the IPv4 resolver, v4-mapped */
    /* Audit rate limit, applied before an event is made (egress.bpf.c, take_audit_token): a flood costs the reader
     * nothing per event over the limit. Plain loads and stores, so CPUs racing for the last
     * token may both get it: the limit is approximate, the counts are not. */
    mw_u64 suppressed;        /* events over the rate limit, not made (atomic) */
    mw_u64 suppressed_socket; /* the same of sock_create (summaries count by event kind) */
    mw_u64 rl_last_ns; /* CLOCK_BOOTTIME the tokens were last refilled at; 0 = bucket full */
    mw_u64 rl_tokens;  /* events that may still be made now */
};

/* The audit rate limit of a sandbox: a burst of MW_AUDIT_BURST events, then MW_AUDIT_PER_SECOND
 * a second. The userspace limit on audit lines has the same numbers. */
#define MW_AUDIT_BURST 200
#define MW_AUDIT_PER_SECOND 20

/* What a redirected DNS socket asked for, keyed by socket cookie, restored on recvmsg and
 * getpeername so resolvers that check the reply's source (glibc, musl) accept it. */
struct mw_dns_orig {
    mw_u8 addr[16];  /* IPv4 in the first 4 bytes when family == 4 */
    mw_u16 port;     /* network order */
    mw_u8 family;    /* 4 or 6 */
    mw_u8 v4_mapped; /* the app used ::ffff:a.b.c.d on a v6 socket */
    mw_u32 pad;
};

#define MW_SANDBOX_AUDIT_ONLY 0x1u /* log what would be denied, allow it */
/* The sandbox ended: its links are gone, and the backstop programs (attached without links, so
 * they stay with the cgroup for as long as a socket made in it lives) deny every connect and
 * send of such a socket, wherever it was passed to. */
#define MW_SANDBOX_ENDED 0x2u

/* Audit ring buffers: a pool of slots, each a ring buffer created on first use and kept, so a
 * sandbox start never updates a map-in-map (each such update waits for an RCU grace period).
 * A sandbox claims a free slot by inserting its name into `event_slot_owner`. */
#define MW_EVENT_SLOTS 256
struct mw_slot_owner {
    char sandbox[56];
    mw_u64 policy_id;
};

#define MW_INLINE_RANGES 8

/* Ports of one action and protocol within an entry. n = number of inline ranges (0..8);
 * MW_PORTS_BITMAP = too many ranges: look the port up in the port-set bitmap set_id. */
struct mw_ports {
    mw_u16 lo[MW_INLINE_RANGES];
    mw_u16 hi[MW_INLINE_RANGES];
    mw_u32 rule[MW_INLINE_RANGES]; /* rule index that put each range here */
    mw_u32 set_id;
    mw_u32 set_rule;
    mw_u32 n;
    mw_u32 pad;
};
#define MW_PORTS_BITMAP 0xffu

#define MW_PROTO_TCP 0
#define MW_PROTO_UDP 1

struct mw_rule_value {
    struct mw_ports deny[2];  /* [MW_PROTO_TCP], [MW_PROTO_UDP] */
    struct mw_ports allow[2];
    mw_u32 reserved;          /* MW_RESERVED_* of the range this entry stands for, or 0 */
    mw_u32 pad;
};

struct mw_key4 {
    mw_u32 prefixlen; /* 64 + network bits */
    mw_u8 policy[8];  /* big-endian policy id */
    mw_u8 addr[4];
};

struct mw_key6 {
    mw_u32 prefixlen; /* 64 + network bits */
    mw_u8 policy[8];
    mw_u8 addr[16];
};

/* Overflow port sets: 65536 bits for one (policy, set, protocol). */
struct mw_portset_key {
    mw_u64 policy_id;
    mw_u32 set_id;
    mw_u32 proto;
};
struct mw_portset {
    mw_u64 bits[1024];
};

/* Rule attribution in events. Rule indexes of the policy are < MW_RULE_SPECIAL. */
#define MW_RULE_SPECIAL 0xffff0000u
#define MW_RULE_DEFAULT 0xffffffffu  /* no rule matched: default deny */
#define MW_RULE_RESERVED 0xfffffffeu /* reserved range, no explicit rule: default deny */
#define MW_RULE_SOCKET 0xfffffffdu   /* socket type not allowed (sock_create) */
#define MW_RULE_UNBOUND 0xfffffffcu  /* the sandbox has no policy bound (never expected) */
#define MW_RULE_PROTO 0xfffffffbu    /* not TCP or UDP (backstop) */
#define MW_RULE_DOT 0xfffffffau      /* DNS over TLS (port 853): names must go through the resolver */
#define MW_RULE_DNS_REDIRECT 0xfffffff9u /* the DNS redirect could not be recorded */

/* Reserved ranges (value.reserved). */
#define MW_RESERVED_NONE 0
#define MW_RESERVED_THIS_HOST 1  /* 0.0.0.0/8 */
#define MW_RESERVED_LOOPBACK 2   /* 127.0.0.0/8, ::1 */
#define MW_RESERVED_PRIVATE 3    /* RFC 1918, fc00::/7 */
#define MW_RESERVED_LINK_LOCAL 4 /* 169.254.0.0/16 (cloud metadata), fe80::/10 */
#define MW_RESERVED_SHARED 5     /* 100.64.0.0/10 (carrier-grade NAT) */
#define MW_RESERVED_MULTICAST 6  /* 224.0.0.0/4, ff00::/8 */
#define MW_RESERVED_OTHER 7      /* 240.0.0.0/4 incl. broadcast, ::/128, NAT64 64:ff9b::/96 */

/* Hooks (event.hook). */
#define MW_HOOK_SOCK_CREATE 1
#define MW_HOOK_CONNECT4 2
#define MW_HOOK_CONNECT6 3
#define MW_HOOK_SENDMSG4 4
#define MW_HOOK_SENDMSG6 5
#define MW_HOOK_SKB_EGRESS 6
#define MW_HOOK_DNS 7 /* emitted by userspace: a query the resolver refused */

#define MW_VERDICT_DENIED 1
#define MW_VERDICT_AUDIT 2 /* would have been denied; allowed in audit-only mode */

/* One denial, as the ring buffer carries it. */
struct mw_event {
    mw_u64 time_ns;   /* CLOCK_BOOTTIME */
    mw_u64 policy_id;
    mw_u32 pid;       /* thread group id */
    mw_u32 rule;      /* rule index or MW_RULE_* */
    mw_u8 comm[16];
    mw_u8 addr[16];   /* IPv4 in the first 4 bytes */
    mw_u16 port;      /* host byte order */
    mw_u8 family;     /* 4 or 6 (after normalisation); 0 for sock_create */
    mw_u8 protocol;   /* IPPROTO_* as the socket has it */
    mw_u8 hook;       /* MW_HOOK_* */
    mw_u8 verdict;    /* MW_VERDICT_* */
    mw_u8 sock_type;  /* SOCK_* (sock_create) */
    mw_u8 pad;
    mw_u32 sock_family; /* AF_* of the socket (sock_create) */
    mw_u32 pad2;
};

#endif
