// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the policy YAML parser (policy.cpp, on top of libyaml). A policy either
// parses into a consistent Policy or fails with one Error of kind policy_invalid that lists
// every problem with its position. Any other exception, a crash or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "error.h"
#include "policy.h"

using namespace mcpwarden;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

namespace {

void check_rules(const std::vector<EgressRule>& rules) {
    for (const auto& r : rules) {
        CHECK(r.cidr.has_value() != !r.host.empty());
        for (size_t i = 0; i < r.ports.size(); ++i) {
            CHECK(r.ports[i].lo >= 1 && r.ports[i].lo <= r.ports[i].hi);
            if (i > 0) CHECK(r.ports[i - 1].hi < r.ports[i].lo);
        }
        CHECK(!r.describe().empty());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        Policy p = parse_policy(text, "fuzz.yaml");
        CHECK(valid_policy_name(p.name));
        check_rules(p.egress.allow);
        check_rules(p.egress.deny);
        if (p.limits.cpu_millicores) CHECK(*p.limits.cpu_millicores >= 1);
    } catch (const Error& e) {
        CHECK(e.kind() == ErrorKind::policy_invalid);
        const auto& errors = e.details().at("errors");
        CHECK(errors.is_array() && !errors.empty());
        for (const auto& err : errors) {
            CHECK(err.at("line").get<int>() >= 0 && err.at("column").get<int>() >= 0);
            CHECK(!err.at("message").get<std::string>().empty());
        }
        CHECK(std::string(e.what()).find("fuzz.yaml:") != std::string::npos);
    }
    return 0;
}
