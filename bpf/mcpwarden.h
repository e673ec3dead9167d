/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The only header shared by the BPF programs and the C++ side: plain fixed-width types,
 * no kernel or libc types. Layout is checked on the C++ side with static_asserts
 * (userspace/lib/bpf_layout_check.cpp).
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
    mw_u64 policy_id;
    mw_u32 flags; /* MW_SANDBOX_* */
    mw_u32 pad;
};

#define MW_SANDBOX_AUDIT_ONLY 0x1u /* log what would be denied, allow it */

#endif
