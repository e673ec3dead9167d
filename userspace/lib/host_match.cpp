// SPDX-License-Identifier: Apache-2.0
#include "host_match.h"

namespace mcpwarden {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

std::string_view strip_dot(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return s;
}

// Every label between dots has at least one character.
bool well_formed(std::string_view name) {
    if (name.empty()) return false;
    size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
        } else {
            ++label;
        }
    }
    return label > 0;
}

}  // namespace

bool host_matches(std::string_view pattern, std::string_view name) {
    pattern = strip_dot(pattern);
    name = strip_dot(name);
    if (!well_formed(name)) return false;
    if (pattern.size() >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        std::string_view parent = pattern.substr(2);
        if (!well_formed(parent)) return false;
        // name = LABEL "." parent, with LABEL a single non-empty label.
        if (name.size() < parent.size() + 2) return false;
        size_t dot = name.size() - parent.size() - 1;
        if (name[dot] != '.') return false;
        if (!iequal(name.substr(dot + 1), parent)) return false;
        return name.substr(0, dot).find('.') == std::string_view::npos;
    }
    if (!well_formed(pattern)) return false;
    return iequal(pattern, name);
}

}  // namespace mcpwarden
