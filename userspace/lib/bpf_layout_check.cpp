// SPDX-License-Identifier: Apache-2.0
// The shared header must mean the same on both sides: the BPF side is compiled for a 64-bit
// little-endian target with natural alignment, like x86_64 and arm64. The numbers below are
// what clang -target bpf lays out (checked against the object's BTF by the enforcer test).
#include <cstddef>

#include "mcpwarden.h"

static_assert(sizeof(mw_sandbox_state) == 80);
static_assert(offsetof(mw_sandbox_state, suppressed) == 48);
static_assert(offsetof(mw_sandbox_state, rl_tokens) == 72);
static_assert(sizeof(mw_dns_orig) == 24);
static_assert(offsetof(mw_sandbox_state, denied) == 16);
static_assert(offsetof(mw_sandbox_state, event_slot) == 12);
static_assert(sizeof(mw_slot_owner) == 64);
static_assert(sizeof(mw_ports) == 80);
static_assert(sizeof(mw_rule_value) == 4 * 80 + 8);
static_assert(sizeof(mw_key4) == 16);
static_assert(sizeof(mw_key6) == 28);
static_assert(offsetof(mw_key6, addr) == 12);
static_assert(sizeof(mw_portset_key) == 16);
static_assert(sizeof(mw_event) == 72);
static_assert(offsetof(mw_event, comm) == 24);
static_assert(offsetof(mw_event, port) == 56);
static_assert(offsetof(mw_event, sock_family) == 64);
