// SPDX-License-Identifier: Apache-2.0
// References to the sandbox's own variables in a policy's env.set values (`${XDG_CACHE_HOME}`).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace mcpwarden {

// The variables mcpwarden itself sets in every sandbox (HOME, TMPDIR, XDG_CACHE_HOME, ...). An
// env.set `value` may name them as ${NAME}: replaced at start by the sandbox's own value, so a
// server's store can live in the persistent cache (`${XDG_CACHE_HOME}/memory.jsonl`). `$${` is
// a literal `${`; values read from a `file` are never expanded.
const std::vector<std::string>& sandbox_variables();

// VALUE with each ${NAME} replaced by VARS' value for NAME. Throws std::invalid_argument saying
// what is wrong when a `${` is not closed or NAME is not one of sandbox_variables() (or not in
// VARS).
std::string expand_sandbox_references(const std::string& value, const std::map<std::string, std::string>& vars);

}  // namespace mcpwarden
