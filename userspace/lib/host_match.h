// SPDX-License-Identifier: Apache-2.0
// Host-name rules of a policy: which names a pattern allows. Shared by `policy explain` and the
// DNS resolver, so both answer the same question the same way.
#pragma once

#include <string_view>

namespace mcpwarden {

// Whether the host pattern of an allow rule matches a queried name.
//   "api.github.com"  matches api.github.com only;
//   "*.example.com"   matches exactly one label in front of example.com: a.example.com, but
//                     neither example.com (the apex) nor a.b.example.com.
// Case-insensitive (DNS names are); one trailing dot on either side is ignored
// ("api.github.com." is the same name). Empty labels never match ("a..example.com").
bool host_matches(std::string_view pattern, std::string_view name);

}  // namespace mcpwarden
