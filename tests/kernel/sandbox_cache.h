// Where a test's sandboxed server can leave files for the test: its /tmp is its own and the
// state directory is hidden from it, but its persistent cache ($XDG_CACHE_HOME) is the host's
// directory.
#pragma once

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

}  // namespace harness
