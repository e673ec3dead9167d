// SPDX-License-Identifier: Apache-2.0
#include "units.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

namespace mcpwarden {
namespace {

void set_why(std::string* why, std::string text) {
    if (why) *why = std::move(text);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

// Reads a non-negative decimal number (digits, optional fraction) from the front of s.
std::optional<long double> take_number(std::string_view& s) {
    size_t i = 0;
    bool digits = false, dot = false;
    while (i < s.size()) {
        char c = s[i];
        if (std::isdigit(static_cast<unsigned char>(c))) {
            digits = true;
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
        ++i;
    }
    if (!digits) return std::nullopt;
    long double value = std::strtold(std::string(s.substr(0, i)).c_str(), nullptr);
    s.remove_prefix(i);
    return value;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text, std::string* why) {
    std::string_view s = trim(text);
    if (s.empty()) {
        set_why(why, "empty size");
        return std::nullopt;
    }
    auto number = take_number(s);
    if (!number) {
        set_why(why, "size must start with a number, as in 64M, 512Mi or 1G");
        return std::nullopt;
    }
    std::string unit;
    for (char c : trim(s)) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    long double mult = 0;
    struct Unit {
        const char* name;
        long double mult;
    };
    static constexpr Unit units[] = {
        {"", 1.0L},           {"b", 1.0L},
        {"k", 1024.0L},       {"ki", 1024.0L},       {"kib", 1024.0L},     {"kb", 1e3L},
        {"m", 1048576.0L},    {"mi", 1048576.0L},    {"mib", 1048576.0L},  {"mb", 1e6L},
        {"g", 1073741824.0L}, {"gi", 1073741824.0L}, {"gib", 1073741824.0L}, {"gb", 1e9L},
        {"t", 1099511627776.0L}, {"ti", 1099511627776.0L}, {"tib", 1099511627776.0L},
        {"tb", 1e12L},
    };
    for (const auto& u : units) {
        if (unit == u.name) mult = u.mult;
    }
    if (mult == 0) {
        set_why(why, "unknown size unit '" + std::string(trim(s)) +
                         "' (use one of B, K, Ki, KB, M, Mi, MB, G, Gi, GB, T, Ti, TB)");
        return std::nullopt;
    }
    long double bytes = std::floor(*number * mult);
    if (bytes > static_cast<long double>(std::numeric_limits<std::int64_t>::max())) {
        set_why(why, "size is too large");
        return std::nullopt;
    }
    return static_cast<std::uint64_t>(bytes);
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* why) {
    std::string_view s = trim(text);
    if (s.empty()) {
        set_why(why, "empty duration");
        return std::nullopt;
    }
    long double total_ms = 0;
    bool any = false;
    while (!s.empty()) {
        auto number = take_number(s);
        if (!number) {
            set_why(why, "duration must be a number with a unit, as in 500ms, 30s, 10m or 1h");
            return std::nullopt;
        }
        size_t i = 0;
        while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
        std::string unit(s.substr(0, i));
        s.remove_prefix(i);
        long double mult;
        if (unit == "ms") mult = 1;
        else if (unit == "s" || unit.empty()) mult = 1000;
        else if (unit == "m" || unit == "min") mult = 60000;
        else if (unit == "h") mult = 3600000;
        else if (unit == "d") mult = 86400000;
        else {
            set_why(why, "unknown duration unit '" + unit + "' (use ms, s, m, h or d)");
            return std::nullopt;
        }
        if (unit.empty() && (any || !s.empty())) {
            set_why(why, "a number without a unit may only stand alone (seconds)");
            return std::nullopt;
        }
        total_ms += *number * mult;
        any = true;
    }
    if (total_ms > 1e15L) {
        set_why(why, "duration is too long");
        return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(total_ms)));
}

std::optional<std::uint32_t> parse_cpu(std::string_view text, std::string* why) {
    std::string_view s = trim(text);
    auto number = take_number(s);
    if (!number) {
        set_why(why, "cpu must be a number of cores, as in 1, 0.5 or 250m");
        return std::nullopt;
    }
    long double millis;
    if (s == "m") millis = *number;
    else if (s.empty()) millis = *number * 1000;
    else {
        set_why(why, "unknown cpu unit '" + std::string(s) + "' (cores, or millicores with m)");
        return std::nullopt;
    }
    if (millis < 1 || millis > 1e6L) {
        set_why(why, "cpu must be between 1m and 1000 cores");
        return std::nullopt;
    }
    return static_cast<std::uint32_t>(std::llround(millis));
}

std::string format_size(std::uint64_t bytes) {
    static const char* suffix[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    // Integer arithmetic: a double would round sizes above 2^53 (found by fuzzing).
    while (bytes >= 1024 && i < 4 && bytes % 1024 == 0) {
        bytes /= 1024;
        ++i;
    }
    return std::to_string(bytes) + suffix[i];
}

std::string format_duration(std::chrono::milliseconds d) {
    auto ms = d.count();
    char buf[64];
    if (ms % 1000 != 0) std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
    else std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(ms / 1000));
    return buf;
}

}  // namespace mcpwarden
