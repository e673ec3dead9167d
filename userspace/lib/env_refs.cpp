// SPDX-License-Identifier: Apache-2.0
#include "env_refs.h"

#include <algorithm>
#include <stdexcept>

namespace mcpwarden {

const std::vector<std::string>& sandbox_variables() {
    static const std::vector<std::string> names{
        "HOME", "TMPDIR", "XDG_CACHE_HOME", "npm_config_cache", "GOCACHE", "GOMODCACHE", "USER", "LOGNAME", "PATH"};
    return names;
}

std::string expand_sandbox_references(const std::string& value, const std::map<std::string, std::string>& vars) {
    std::string out;
    for (std::size_t i = 0; i < value.size();) {
        if (value.compare(i, 3, "$${") == 0) {
            out += "${";
            i += 3;
            continue;
        }
        if (value.compare(i, 2, "${") != 0) {
            out += value[i++];
            continue;
        }
        auto end = value.find('}', i + 2);
        if (end == std::string::npos)
            throw std::invalid_argument("'${' without a closing '}' (write $${ for a literal ${)");
        std::string name = value.substr(i + 2, end - i - 2);
        const auto& known = sandbox_variables();
        auto it = vars.find(name);
        if (std::find(known.begin(), known.end(), name) == known.end() || it == vars.end()) {
            std::string list;
            for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
            throw std::invalid_argument("${" + name + "} is not a variable of the sandbox (one of " + list +
                                        "; write $${ for a literal ${)");
        }
        out += it->second;
        i = end + 1;
    }
    return out;
}

}  // namespace mcpwarden
