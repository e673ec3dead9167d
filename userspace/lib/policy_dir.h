// SPDX-License-Identifier: Apache-2.0
// Policies referred to by name ("github") from a policy directory, or by path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "paths.h"
#include "policy.h"

namespace mcpwarden {

// Where installed policies live: CMake installs policies/*.yaml there (paths.h, generated).
inline constexpr const char* kInstalledPolicyDir = MCPWARDEN_POLICY_DIR;

// The directory names resolve in when no --policy-dir is given. Run from a build tree
// (<build>/bin/mcpwarden, with <build>/CMakeCache.txt) it is the checkout's policies/
// directory: the source directory that CMakeCache.txt names, else <exe>/../../policies.
// Otherwise kInstalledPolicyDir. exe_path is the binary (default: /proc/self/exe).
std::string default_policy_dir();
std::string default_policy_dir(const std::string& exe_path);

// A reference containing '/' or ending in .yaml or .yml is a file path; anything else is a
// policy name.
bool is_policy_path(std::string_view ref);

// The file a reference stands for: a path as it is, a name as DIR/NAME.yaml (dir empty =
// default_policy_dir()). Throws Error(usage) naming the file when it does not exist, and for a
// name also the directory and the names available there.
std::string resolve_policy(const std::string& ref, const std::string& dir = "");

// resolve_policy + load_policy_file.
Policy load_policy_ref(const std::string& ref, const std::string& dir = "");

// Names of the policies in a directory (NAME.yaml files), sorted.
std::vector<std::string> policy_names(const std::string& dir);

}  // namespace mcpwarden
