// SPDX-License-Identifier: GPL-2.0
// Egress enforcement for sandbox cgroups. Loaded once, attached to each sandbox cgroup with
// BPF links; the sandbox's policy is found through cgroup storage.
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

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

// socket(): only TCP/MPTCP streams and UDP datagrams of AF_INET/AF_INET6. Raw, ICMP/ping,
// SCTP and UDP-Lite are refused with EPERM. The kernel passes the resolved protocol here.
SEC("cgroup/sock_create")
int mw_sock_create(struct bpf_sock *sk)
{
    if (sk->family != AF_INET && sk->family != AF_INET6)
        return 0;
    if (sk->type == SOCK_STREAM &&
        (sk->protocol == IPPROTO_TCP || sk->protocol == IPPROTO_MPTCP))
        return 1;
    if (sk->type == SOCK_DGRAM && sk->protocol == IPPROTO_UDP)
        return 1;
    return 0;
}
