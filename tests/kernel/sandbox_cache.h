// SPDX-License-Identifier: Apache-2.0
// Where a test's sandboxed server can leave files for the test: its /tmp is its own and the
// state directory is hidden from it, but its persistent cache ($XDG_CACHE_HOME) is the host's
// directory.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "harness.h"

namespace harness {

// The persistent cache directory of `policy`'s sandboxes on the host (under state_dir(), of
// whatever uid they ran as), "" while there is none.
inline std::string sandbox_cache_dir(const std::string& policy) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(state_dir() + "/cache/" + policy, ec)) {
        if (e.is_directory()) return e.path().string();
    }
    return "";
}

// The disk a directory's files take (their blocks, not their sizes), links not followed.
inline std::uint64_t disk_use(const std::string& dir) {
    namespace fs = std::filesystem;
    std::uint64_t total = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); ++it) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
            total += static_cast<std::uint64_t>(st.st_blocks) * 512;
    }
    return total;
}

}  // namespace harness
