// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the size, duration and cpu parsers (units.h), which read policy values and
// command-line flags. Besides "no crash, no sanitizer report", each accepted value must be in
// range and survive a round trip through its formatter.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "units.h"

using namespace mcpwarden;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    bool has_nul = text.find('\0') != std::string_view::npos;

    std::string why;
    if (auto bytes = parse_size(text, &why)) {
        CHECK(!has_nul);
        CHECK(*bytes <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
        auto formatted = format_size(*bytes);
        auto again = parse_size(formatted);
        CHECK(again && *again == *bytes);
    } else {
        CHECK(!why.empty());
    }

    why.clear();
    if (auto d = parse_duration(text, &why)) {
        CHECK(!has_nul);
        CHECK(d->count() >= 0 && d->count() <= 1'000'000'000'000'000);
        auto again = parse_duration(format_duration(*d));
        CHECK(again && *again == *d);
    } else {
        CHECK(!why.empty());
    }

    why.clear();
    if (auto cpu = parse_cpu(text, &why)) {
        CHECK(!has_nul);
        CHECK(*cpu >= 1 && *cpu <= 1'000'000);
    } else {
        CHECK(!why.empty());
    }
    return 0;
}
