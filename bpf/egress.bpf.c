// SPDX-License-Identifier: GPL-2.0
// Egress enforcement for sandbox cgroups. Loaded once and pinned; attached to each sandbox
// cgroup with BPF links. The sandbox's policy is found through cgroup storage (the attach
// point), never through the current task, which may differ from the socket's cgroup.
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mcpwarden.h"

char LICENSE[] SEC("license") = "GPL";

/* From <sys/socket.h>, which pulls in glibc headers a BPF target cannot build. */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

struct {
    __uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
    __type(key, __u64); /* cgroup id only: shared by every attach type (5.9+) */
    __type(value, struct mw_sandbox_state);
} sandbox_state SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC); /* mandatory for LPM tries */
    __uint(max_entries, 1 << 21);
    __type(key, struct mw_key4);
    __type(value, struct mw_rule_value);
} rules4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 1 << 21);
    __type(key, struct mw_key6);
    __type(value, struct mw_rule_value);
} rules6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 1 << 14);
    __type(key, struct mw_portset_key);
    __type(value, struct mw_portset);
} portsets SEC(".maps");

/* One ring buffer per sandbox, so concurrent consumers never take each other's events. */
struct ringbuf_inner {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, MW_EVENT_SLOTS);
    __type(key, __u32);
    __array(values, struct ringbuf_inner);
} events SEC(".maps");

/* Which sandbox holds which slot (userspace bookkeeping, pinned with the rest). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MW_EVENT_SLOTS);
    __type(key, __u32);
    __type(value, struct mw_slot_owner);
} event_slot_owner SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} events_lost SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 1 << 16);
    __type(key, __u64); /* socket cookie */
    __type(value, struct mw_dns_orig);
} dns_orig SEC(".maps");

struct verdict {
    __u32 allow;
    __u32 rule;
};

static __always_inline void put_policy(__u8 *dst, __u64 id)
{
#pragma unroll
    for (int i = 0; i < 8; i++)
        dst[i] = (__u8)(id >> (56 - 8 * i));
}

static __always_inline int port_in(const struct mw_ports *p, __u64 policy_id, __u32 proto,
                                   __u16 port, __u32 *rule)
{
    if (p->n == MW_PORTS_BITMAP) {
        struct mw_portset_key k = {.policy_id = policy_id, .set_id = p->set_id, .proto = proto};
        struct mw_portset *set = bpf_map_lookup_elem(&portsets, &k);
        if (!set)
            return 0;
        if (set->bits[(port >> 6) & 1023] & (1ULL << (port & 63))) {
            *rule = p->set_rule;
            return 1;
        }
        return 0;
    }
#pragma unroll
    for (int i = 0; i < MW_INLINE_RANGES; i++) {
        if (i >= p->n)
            break;
        if (port >= p->lo[i] && port <= p->hi[i]) {
            *rule = p->rule[i];
            return 1;
        }
    }
    return 0;
}

/* The one decision, for every hook. family is 4 or 6, addr in network order. */
static __always_inline struct verdict decide_entry(const struct mw_rule_value *v, __u64 policy_id,
                                                   __u32 proto, __u16 port)
{
    struct verdict out = {.allow = 0, .rule = MW_RULE_DEFAULT};
    if (!v)
        return out;
    proto &= 1;
    if (port_in(&v->deny[proto], policy_id, proto, port, &out.rule))
        return out;
    if (port_in(&v->allow[proto], policy_id, proto, port, &out.rule)) {
        out.allow = 1;
        return out;
    }
    out.rule = v->reserved ? MW_RULE_RESERVED : MW_RULE_DEFAULT;
    return out;
}

static __always_inline const struct mw_rule_value *lookup4(__u64 policy_id, __u32 addr)
{
    struct mw_key4 k = {.prefixlen = 64 + 32};
    put_policy(k.policy, policy_id);
    __builtin_memcpy(k.addr, &addr, 4);
    return bpf_map_lookup_elem(&rules4, &k);
}

static __always_inline const struct mw_rule_value *lookup6(__u64 policy_id, const __u32 *a)
{
    struct mw_key6 k = {.prefixlen = 64 + 128};
    put_policy(k.policy, policy_id);
    __builtin_memcpy(k.addr, a, 16);
    return bpf_map_lookup_elem(&rules6, &k);
}

static __always_inline int is_v4_mapped(const __u32 *a)
{
    return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* An address as the decision takes it: IPv4 in w[0] when family == 4. */
struct mw_addr {
    __u32 w[4];
};

/* Normalises and decides: allow in bit 32 of the result, the rule (index or MW_RULE_*) in
 * the low 32 bits. addr holds the address; on return it holds the address the decision was
 * about (for the event), and family its family. A global function: the verifier checks it
 * once per program, apart from its callers, instead of once along every path that reaches a
 * call (which more than doubled the instructions it walked through a hook and made loading the
 * programs the largest part of a sandbox's cold start). It cannot trust its pointers. */
__noinline __u64 mw_decide(__u64 policy_id, __u32 *family, struct mw_addr *addr, __u32 proto, __u16 port)
{
    struct verdict v = {.allow = 0, .rule = MW_RULE_DEFAULT};
    if (!family || !addr)
        return v.rule;
    __u32 *a = addr->w;
    if (*family == 6 && is_v4_mapped(a)) {
        /* ::ffff:a.b.c.d is IPv4 on the wire (connect6 sees it that way, 6.18 and 6.1). */
        *family = 4;
        a[0] = a[3];
        a[1] = a[2] = a[3] = 0;
    }
    if (*family == 4) {
        __u32 lookup = a[0];
        if (lookup == 0) /* 0.0.0.0 reaches the loopback interface */
            lookup = bpf_htonl(0x7f000001);
        v = decide_entry(lookup4(policy_id, lookup), policy_id, proto, port);
    } else {
        __u32 l[4] = {a[0], a[1], a[2], a[3]};
        if ((l[0] | l[1] | l[2] | l[3]) == 0) /* :: reaches ::1 */
            l[3] = bpf_htonl(1);
        v = decide_entry(lookup6(policy_id, l), policy_id, proto, port);
    }
    return ((__u64)(v.allow ? 1 : 0) << 32) | v.rule;
}

static __always_inline struct verdict decide(__u64 policy_id, __u32 *family, __u32 *a,
                                             __u32 proto, __u16 port)
{
    __u64 r = mw_decide(policy_id, family, (struct mw_addr *)a, proto, port);
    struct verdict v = {.allow = (__u32)(r >> 32) & 1, .rule = (__u32)r};
    return v;
}

/* Takes one of the sandbox's audit tokens (refilled at MW_AUDIT_PER_SECOND up to
 * MW_AUDIT_BURST); without one, the event is counted in st->suppressed* instead of made. Before
 * this, each denial of a flood was a ring-buffer record that woke mcpwarden's reader only for
 * userspace to drop the line. No lock: CPUs racing for the last token may each take it (the
 * limit is a little loose under contention), but every event is still counted exactly once:
 * here, as lost, or as a line or a suppressed one by userspace. */
static __always_inline int take_audit_token(struct mw_sandbox_state *st, __u8 hook)
{
    const __u64 per_token = 1000000000ull / MW_AUDIT_PER_SECOND;
    __u64 now = bpf_ktime_get_boot_ns();
    __u64 last = st->rl_last_ns;
    __u64 tokens = st->rl_tokens;
    if (last == 0) {
        /* A new sandbox (the kernel zeroes the storage, userspace binds it zeroed): full. */
        tokens = MW_AUDIT_BURST;
        last = now;
    } else if (now > last) { /* another CPU may have stored a later time */
        __u64 add = (now - last) / per_token;
        if (tokens >= MW_AUDIT_BURST || add >= MW_AUDIT_BURST - tokens) {
            tokens = MW_AUDIT_BURST;
            last = now;
        } else {
            tokens += add;
            last += add * per_token; /* the remainder counts toward the next token */
        }
    }
    if (tokens == 0) {
        st->rl_last_ns = last;
        if (hook == MW_HOOK_SOCK_CREATE)
            __sync_fetch_and_add(&st->suppressed_socket, 1);
        else
            __sync_fetch_and_add(&st->suppressed, 1);
        return 0;
    }
    st->rl_tokens = tokens - 1;
    st->rl_last_ns = last;
    return 1;
}

/* task: whether the current task is the sandbox's (socket hooks) — cgroup_skb programs may
 * not ask (bpf_get_current_pid_tgid/comm are refused there on 6.1) and run in softirq anyway. */
static __always_inline void emit(struct mw_sandbox_state *st, __u8 hook, __u32 family,
                                 const __u32 *a, __u16 port, __u32 protocol, __u32 rule,
                                 __u8 verdict, __u32 sock_family, __u32 sock_type, const int task)
{
    if (st && !take_audit_token(st, hook))
        return;
    __u64 id = st ? st->policy_id : 0;
    __u32 slot = st && st->event_slot ? st->event_slot - 1 : MW_EVENT_SLOTS;
    void *rb = slot < MW_EVENT_SLOTS ? bpf_map_lookup_elem(&events, &slot) : 0;
    struct mw_event *e = rb ? bpf_ringbuf_reserve(rb, sizeof(*e), 0) : 0;
    if (!e) {
        if (st)
            __sync_fetch_and_add(&st->lost, 1);
        __u32 zero = 0;
        __u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);
        if (lost)
            *lost += 1;
        return;
    }
    e->time_ns = bpf_ktime_get_boot_ns();
    e->policy_id = id;
    e->rule = rule;
    if (task) {
        e->pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(e->comm, sizeof(e->comm));
    } else {
        e->pid = 0;
        __builtin_memset(e->comm, 0, sizeof(e->comm));
    }
    __builtin_memset(e->addr, 0, sizeof(e->addr));
    if (family == 4)
        __builtin_memcpy(e->addr, a, 4);
    else if (family == 6)
        __builtin_memcpy(e->addr, a, 16);
    e->port = port;
    e->family = (__u8)family;
    e->protocol = (__u8)protocol;
    e->hook = hook;
    e->verdict = verdict;
    e->sock_type = (__u8)sock_type;
    e->pad = 0;
    e->sock_family = sock_family;
    e->pad2 = 0;
    bpf_ringbuf_submit(e, 0);
}

/* Records a denial; returns what the hook returns (1 in audit-only mode, else 0). */
static __always_inline int deny_as(struct mw_sandbox_state *st, __u8 hook, __u32 family,
                                   const __u32 *a, __u16 port, __u32 protocol, __u32 rule,
                                   __u32 sock_family, __u32 sock_type, const int task)
{
    if (st && (st->flags & MW_SANDBOX_AUDIT_ONLY) && rule != MW_RULE_UNBOUND) {
        __sync_fetch_and_add(&st->audited, 1);
        emit(st, hook, family, a, port, protocol, rule, MW_VERDICT_AUDIT, sock_family, sock_type, task);
        return 1;
    }
    if (st)
        __sync_fetch_and_add(&st->denied, 1);
    emit(st, hook, family, a, port, protocol, rule, MW_VERDICT_DENIED, sock_family, sock_type, task);
    return 0;
}

/* What a socket hook denies, for mw_deny_sock (a BPF function takes at most five arguments). */
struct mw_denial {
    __u32 a[4];
    __u32 family;
    __u32 protocol;
    __u32 rule;
    __u32 sock_family;
    __u32 sock_type;
    __u16 port;
    __u8 hook;
    __u8 pad;
};

/* Socket hooks run in the task that made the call. A global function, verified once per
 * program rather than at each of the hooks' five ways to a denial (see mw_decide). The packet
 * backstop has its own (mw_deny_packet): the task helpers are refused in cgroup_skb programs
 * whether or not a path reaches them. */
__noinline int mw_deny_sock(struct mw_sandbox_state *st, struct mw_denial *d)
{
    if (!d)
        return 0;
    return deny_as(st, d->hook, d->family, d->a, d->port, d->protocol, d->rule, d->sock_family,
                   d->sock_type, 1);
}

static __always_inline int deny(struct mw_sandbox_state *st, __u8 hook, __u32 family, const __u32 *a,
                                __u16 port, __u32 protocol, __u32 rule, __u32 sock_family,
                                __u32 sock_type)
{
    struct mw_denial d = {.family = family, .protocol = protocol, .rule = rule,
                          .sock_family = sock_family, .sock_type = sock_type, .port = port,
                          .hook = hook};
    if (family == 4)
        d.a[0] = a[0];
    else if (family == 6)
        __builtin_memcpy(d.a, a, 16);
    return mw_deny_sock(st, &d) & 1; /* a global function's result is any value to the verifier */
}

/* The packet backstop does not know the task: its own global function, where the task
 * helpers are compiled out. */
__noinline int mw_deny_packet(struct mw_sandbox_state *st, struct mw_denial *d)
{
    if (!d)
        return 0;
    return deny_as(st, MW_HOOK_SKB_EGRESS, d->family, d->a, d->port, d->protocol, d->rule, 0, 0, 0);
}

static __always_inline int deny_packet(struct mw_sandbox_state *st, __u32 family, const __u32 *a,
                                       __u16 port, __u32 protocol, __u32 rule)
{
    struct mw_denial d = {.family = family, .protocol = protocol, .rule = rule, .port = port};
    if (family == 4)
        d.a[0] = a[0];
    else if (family == 6)
        __builtin_memcpy(d.a, a, 16);
    return mw_deny_packet(st, &d) & 1;
}

static __always_inline int proto_index(__u32 type, __u32 protocol, __u32 *idx)
{
    if (type == SOCK_STREAM && (protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP)) {
        *idx = MW_PROTO_TCP;
        return 1;
    }
    if (type == SOCK_DGRAM && protocol == IPPROTO_UDP) {
        *idx = MW_PROTO_UDP;
        return 1;
    }
    return 0;
}

/* The sandbox's own resolver (the target of the DNS redirect), in any of its spellings. */
static __always_inline int is_resolver(const struct mw_sandbox_state *st, __u32 family, const __u32 *a,
                                       __u16 port)
{
    if (!st->dns_port4)
        return 0;
    if (family == 4)
        return a[0] == st->dns_ip4 && port == st->dns_port4;
    if (is_v4_mapped(a))
        return a[3] == st->dns_ip4 && port == st->dns_port4;
    return st->dns_port6 && a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1) && port == st->dns_port6;
}

/* Every port-53 flow, to any address, goes to mcpwarden's resolver for this sandbox; the
 * original destination is kept by socket cookie for recvmsg/getpeername. */
static __always_inline int redirect_dns(struct bpf_sock_addr *ctx, struct mw_sandbox_state *st,
                                        __u8 hook, __u32 family, const __u32 *a, __u32 protocol)
{
    struct mw_dns_orig orig = {};
    orig.port = bpf_htons(53);
    orig.family = (__u8)family;
    int mapped = family == 6 && is_v4_mapped(a);
    orig.v4_mapped = (__u8)mapped;
    if (family == 4)
        __builtin_memcpy(orig.addr, a, 4);
    else
        __builtin_memcpy(orig.addr, a, 16);
    __u64 cookie = bpf_get_socket_cookie(ctx);
    if (bpf_map_update_elem(&dns_orig, &cookie, &orig, BPF_ANY))
        return deny(st, hook, family, a, 53, protocol, MW_RULE_DNS_REDIRECT, 0, 0); /* fail closed */
    if (family == 4) {
        ctx->user_ip4 = st->dns_ip4;
        ctx->user_port = bpf_htons(st->dns_port4);
    } else if (mapped || !st->dns_port6) {
        /* ::ffff:127.0.0.1 reaches the IPv4 resolver from a dual-stack socket. */
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
        ctx->user_ip6[3] = st->dns_ip4;
        ctx->user_port = bpf_htons(st->dns_port4);
    } else {
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = 0;
        ctx->user_ip6[3] = bpf_htonl(1);
        ctx->user_port = bpf_htons(st->dns_port6);
    }
    return 1;
}

/* recvmsg/getpeername: a reply from the resolver is shown as coming from where the app sent
 * its query. These hooks cannot deny (the verifier only accepts return 1). */
static __always_inline void restore_dns(struct bpf_sock_addr *ctx, __u32 family)
{
    struct mw_sandbox_state *st = bpf_get_local_storage(&sandbox_state, 0);
    if (!st || !st->dns_port4)
        return;
    volatile __u32 raw_port = ctx->user_port;
    __u16 port = bpf_ntohs((__u16)raw_port);
    if (family == 4) {
        if (ctx->user_ip4 != st->dns_ip4 || port != st->dns_port4)
            return;
    } else {
        __u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
        int from4 = w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff) && w3 == st->dns_ip4 &&
                    port == st->dns_port4;
        int from6 = w0 == 0 && w1 == 0 && w2 == 0 && w3 == bpf_htonl(1) && port == st->dns_port6 &&
                    st->dns_port6;
        if (!from4 && !from6)
            return;
    }
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct mw_dns_orig *orig = bpf_map_lookup_elem(&dns_orig, &cookie);
    if (!orig)
        return;
    if (family == 4) {
        if (orig->family != 4)
            return;
        __u32 ip;
        __builtin_memcpy(&ip, orig->addr, 4);
        ctx->user_ip4 = ip;
    } else if (orig->family == 4 || orig->v4_mapped) {
        __u32 ip;
        __builtin_memcpy(&ip, orig->family == 4 ? orig->addr : orig->addr + 12, 4);
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
        ctx->user_ip6[3] = ip;
    } else {
        __u32 w[4];
        __builtin_memcpy(w, orig->addr, 16);
        ctx->user_ip6[0] = w[0];
        ctx->user_ip6[1] = w[1];
        ctx->user_ip6[2] = w[2];
        ctx->user_ip6[3] = w[3];
    }
    ctx->user_port = orig->port;
}

SEC("cgroup/recvmsg4")
int mw_recvmsg4(struct bpf_sock_addr *ctx)
{
    restore_dns(ctx, 4);
    return 1;
}

SEC("cgroup/recvmsg6")
int mw_recvmsg6(struct bpf_sock_addr *ctx)
{
    restore_dns(ctx, 6);
    return 1;
}

SEC("cgroup/getpeername4")
int mw_getpeername4(struct bpf_sock_addr *ctx)
{
    restore_dns(ctx, 4);
    return 1;
}

SEC("cgroup/getpeername6")
int mw_getpeername6(struct bpf_sock_addr *ctx)
{
    restore_dns(ctx, 6);
    return 1;
}

static __always_inline int check_addr(struct bpf_sock_addr *ctx, __u8 hook, __u32 family)
{
    struct mw_sandbox_state *st = bpf_get_local_storage(&sandbox_state, 0);
    __u32 a[4] = {0, 0, 0, 0};
    /* user_port: a 4-byte load, as older kernels only accept that width. */
    volatile __u32 raw_port = ctx->user_port;
    __u16 port = bpf_ntohs((__u16)raw_port);
    __u32 protocol = ctx->protocol;
    if (family == 4) {
        a[0] = ctx->user_ip4;
    } else {
        a[0] = ctx->user_ip6[0];
        a[1] = ctx->user_ip6[1];
        a[2] = ctx->user_ip6[2];
        a[3] = ctx->user_ip6[3];
    }
    if (!st || st->policy_id == 0)
        return deny(st, hook, family, a, port, protocol, MW_RULE_UNBOUND, 0, 0);
    __u32 idx;
    if (!proto_index(ctx->type, protocol, &idx))
        return deny(st, hook, family, a, port, protocol, MW_RULE_PROTO, 0, ctx->type);
    if (port == 53 && st->dns_port4)
        return redirect_dns(ctx, st, hook, family, a, protocol);
    if (is_resolver(st, family, a, port))
        return 1; /* already redirected: a connected v6 socket's v4-mapped send re-enters sendmsg4 */
    if (port == 853) {
        __u32 f = family;
        if (f == 6 && is_v4_mapped(a))
            f = 4, a[0] = a[3];
        return deny(st, hook, f, a, port, protocol, MW_RULE_DOT, 0, 0);
    }
    struct verdict v = decide(st->policy_id, &family, a, idx, port);
    if (v.allow)
        return 1;
    return deny(st, hook, family, a, port, protocol, v.rule, 0, 0);
}

SEC("cgroup/connect4")
int mw_connect4(struct bpf_sock_addr *ctx)
{
    return check_addr(ctx, MW_HOOK_CONNECT4, 4);
}

SEC("cgroup/connect6")
int mw_connect6(struct bpf_sock_addr *ctx)
{
    return check_addr(ctx, MW_HOOK_CONNECT6, 6);
}

/* A v6 UDP socket sending to ::ffff:a.b.c.d, or with a plain sockaddr_in, lands here. */
SEC("cgroup/sendmsg4")
int mw_sendmsg4(struct bpf_sock_addr *ctx)
{
    return check_addr(ctx, MW_HOOK_SENDMSG4, 4);
}

SEC("cgroup/sendmsg6")
int mw_sendmsg6(struct bpf_sock_addr *ctx)
{
    return check_addr(ctx, MW_HOOK_SENDMSG6, 6);
}

/* Backstops: attached to a sandbox cgroup without a link (BPF_PROG_ATTACH), they stay in force
 * after the sandbox's links are gone, until the kernel releases the cgroup once its last socket
 * is freed. A socket made in the sandbox and passed to another process (SCM_RIGHTS) would
 * otherwise connect anywhere once its sandbox ended. While the sandbox runs they allow, and the
 * programs above decide. */
static __always_inline int backstop(void)
{
    struct mw_sandbox_state *st = bpf_get_local_storage(&sandbox_state, 0);
    return st && (st->flags & MW_SANDBOX_ENDED) ? 0 : 1;
}

SEC("cgroup/connect4")
int mw_backstop_connect4(struct bpf_sock_addr *ctx)
{
    return backstop();
}

SEC("cgroup/connect6")
int mw_backstop_connect6(struct bpf_sock_addr *ctx)
{
    return backstop();
}

SEC("cgroup/sendmsg4")
int mw_backstop_sendmsg4(struct bpf_sock_addr *ctx)
{
    return backstop();
}

SEC("cgroup/sendmsg6")
int mw_backstop_sendmsg6(struct bpf_sock_addr *ctx)
{
    return backstop();
}

// socket(): only TCP/MPTCP streams and UDP datagrams of AF_INET/AF_INET6. Raw, ICMP/ping,
// SCTP and UDP-Lite are refused with EPERM. The kernel passes the resolved protocol here.
// (This hook runs only for AF_INET/AF_INET6; other families need seccomp.)
SEC("cgroup/sock_create")
int mw_sock_create(struct bpf_sock *sk)
{
    __u32 idx;
    if ((sk->family == AF_INET || sk->family == AF_INET6) &&
        proto_index(sk->type, sk->protocol, &idx))
        return 1;
    struct mw_sandbox_state *st = bpf_get_local_storage(&sandbox_state, 0);
    __u32 none[4] = {0, 0, 0, 0};
    return deny(st, MW_HOOK_SOCK_CREATE, 0, none, 0, sk->protocol, MW_RULE_SOCKET, sk->family,
                sk->type);
}

// Packet-level backstop with the same maps: catches what the socket hooks never see (raw and
// ping sockets that slipped through, anything missed). It drops silently: a TCP connect would
// hang rather than fail, so the user-facing errors come from the socket hooks.
SEC("cgroup_skb/egress")
int mw_egress(struct __sk_buff *skb)
{
    struct mw_sandbox_state *st = bpf_get_local_storage(&sandbox_state, 0);
    __u32 a[4] = {0, 0, 0, 0};
    __u32 family, idx;
    __u8 l4;
    __u32 l4off;
    int first_fragment = 1;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
            return 0;
        family = 4;
        a[0] = ip.daddr;
        l4 = ip.protocol;
        l4off = (ip.ihl & 0xf) * 4;
        first_fragment = (bpf_ntohs(ip.frag_off) & 0x1fff) == 0;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
            return 0;
        family = 6;
        __builtin_memcpy(a, &ip6.daddr, 16);
        l4 = ip6.nexthdr;
        l4off = sizeof(ip6);
    } else {
        return 0;
    }
    if (!st || st->policy_id == 0)
        return deny_packet(st, family, a, 0, l4, MW_RULE_UNBOUND);
    /* In audit-only mode the socket hooks already logged each flow; every packet of it
     * would only repeat that. */
    if (st->flags & MW_SANDBOX_AUDIT_ONLY)
        return 1;
    if (l4 == IPPROTO_TCP)
        idx = MW_PROTO_TCP;
    else if (l4 == IPPROTO_UDP)
        idx = MW_PROTO_UDP;
    else
        return deny_packet(st, family, a, 0, l4, MW_RULE_PROTO);
    __u16 port = 0;
    if (first_fragment) {
        __u8 hdr[14];
        if (bpf_skb_load_bytes(skb, l4off, hdr, idx == MW_PROTO_TCP ? 14 : 4))
            return 0;
        port = ((__u16)hdr[2] << 8) | hdr[3];
        /* TCP: the connect hook decided; only a connection's first packet is checked again,
         * so a learned address expiring does not cut connections opened under it. */
        if (idx == MW_PROTO_TCP && !(hdr[13] & 0x02 /* SYN */))
            return 1;
    }
    if (is_resolver(st, family, a, port))
        return 1;
    struct verdict v = decide(st->policy_id, &family, a, idx, port);
    if (v.allow)
        return 1;
    if (!first_fragment)
        return 1; /* the first fragment carried the ports and was checked */
    return deny_packet(st, family, a, port, l4, v.rule);
}

/* Test entry for the decision function: sock_addr programs cannot be test-run, raw_tp can.
 * args: policy id, family (4/6), address high 64 bits, low 64 bits (network order bytes as
 * the caller packed them), port, protocol index. Result in test_result_*. */
__u32 test_result_allow = 0;
__u32 test_result_rule = 0;
__u32 test_result_family = 0;

SEC("raw_tp")
int mw_test_decide(__u64 *ctx)
{
    __u32 a[4];
    __u64 hi = ctx[2], lo = ctx[3];
    __builtin_memcpy(&a[0], &hi, 8);
    __builtin_memcpy(&a[2], &lo, 8);
    __u32 family = (__u32)ctx[1];
    struct verdict v = decide(ctx[0], &family, a, (__u32)ctx[5] & 1, (__u16)ctx[4]);
    test_result_allow = v.allow;
    test_result_rule = v.rule;
    test_result_family = family;
    return v.allow;
}
