// SPDX-License-Identifier: Apache-2.0
// The disk bound of a sandbox's persistent cache (policy `cache:`, docs/security.md): checked
// at the start and the end of each run. Over the bound, the files used longest ago go first
// until it fits (on_full: trim), or the run is refused (on_full: refuse).
//
// The cache belongs to the sandbox's user, who may rearrange it at any moment: the walk opens
// every directory relative to its parent with O_NOFOLLOW, never crosses a mount, and unlinks
// relative to the directory it read, so no link can lead root's unlink out of the cache.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "policy.h"

namespace mcpwarden {

struct CacheUsage {
    std::uint64_t bytes = 0;  // disk use (allocated blocks) of its regular files
    std::uint64_t files = 0;
};

CacheUsage cache_usage(const std::string& dir);

// Removes the least recently used files (by the later of atime and mtime) until `dir` uses at
// most `max_bytes`. Returns what is left.
CacheUsage trim_cache(const std::string& dir, std::uint64_t max_bytes);

// The run's check: `at_start` refuses (Error(sandbox_unavailable)) an over-full cache under
// on_full: refuse; otherwise trims it. Adds {bytes, files, max_size, trimmed_bytes} to
// `report` ("cache" of the run report).
void enforce_cache_bound(const CachePolicy& policy, const std::string& dir, bool at_start, nlohmann::json& report);

}  // namespace mcpwarden
