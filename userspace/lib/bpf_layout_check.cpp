// The shared header must mean the same on both sides: the BPF side is compiled for a 64-bit
// little-endian target with natural alignment, like x86_64 and arm64.
#include <cstddef>

#include "mcpwarden.h"

static_assert(sizeof(mw_sandbox_state) == 16);
static_assert(offsetof(mw_sandbox_state, policy_id) == 0);
static_assert(offsetof(mw_sandbox_state, flags) == 8);
