// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: what `mcpwarden oci-hook` reads from a runtime (oci.h): the OCI state on
// stdin, its annotations, config.json's cgroupsPath and its expansion. Besides "no crash, no
// sanitizer report": input is either refused with Error or parsed, and an expanded cgroup path
// is absolute with no ".." component.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "error.h"
#include "oci.h"

using namespace mcpwarden;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        OciState s = parse_oci_state(text);
        CHECK(!s.id.empty());
        CHECK(s.pid >= 0);
        try {
            if (auto r = oci_request(s)) CHECK(!r->policy.empty());
        } catch (const Error&) {
        }
    } catch (const Error&) {
    }
    try {
        std::string path = oci_cgroups_path(text);
        if (!path.empty()) {
            std::string expanded = expand_cgroups_path(path);
            CHECK(!expanded.empty() && expanded.front() == '/');
            CHECK(("/" + expanded + "/").find("/../") == std::string::npos);
        }
    } catch (const Error&) {
    }
    try {
        std::string expanded = expand_cgroups_path(text);
        CHECK(!expanded.empty() && expanded.front() == '/');
        CHECK((expanded + "/").find("/../") == std::string::npos);
    } catch (const Error&) {
    }
    return 0;
}
