// SPDX-License-Identifier: Apache-2.0
// What an OCI runtime hook is given (the runtime-spec's state on stdin and the bundle's
// config.json) and where the container's cgroup is: `mcpwarden oci-hook` (issue 15).
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace mcpwarden {

// The annotations a container asks for a policy with.
inline constexpr const char* kOciPolicyAnnotation = "io.mcpwarden.policy";
inline constexpr const char* kOciAuditOnlyAnnotation = "io.mcpwarden.audit-only";

// The OCI state a runtime writes to a hook's stdin (runtime-spec, runtime.md "State").
struct OciState {
    std::string oci_version, id, status, bundle;
    pid_t pid = 0;  // 0 when absent (poststop)
    std::map<std::string, std::string> annotations;
};

// Parses the state; throws Error(input_invalid) naming what is wrong. At most 1 MiB.
OciState parse_oci_state(std::string_view text);

// What the container asks of mcpwarden through its annotations.
struct OciRequest {
    std::string policy;
    bool audit_only = false;
};
// nullopt when the container carries no policy annotation (the hook then does nothing);
// throws Error(input_invalid) for a present but unusable one (empty, or audit-only not a
// boolean word).
std::optional<OciRequest> oci_request(const OciState& state);

// linux.cgroupsPath of a bundle's config.json text ("" when absent); throws Error(input_invalid)
// when the text is not a JSON object.
std::string oci_cgroups_path(std::string_view config_json);

// A cgroupsPath as a path under the cgroup v2 mount ("/a/b"): an absolute path as it is; the
// systemd driver's "slice:prefix:name" expanded the way runc does ("kubepods-burstable.slice"
// -> "/kubepods.slice/kubepods-burstable.slice", the unit "prefix-name.scope"; a name that
// already ends in ".slice" is that slice itself); a relative path under `parent` ("/" for
// none). Throws Error(input_invalid) for a form no runtime writes (a slice name with "/" or
// "--", "..", an empty name).
std::string expand_cgroups_path(std::string_view path, std::string_view parent = "/");

// A systemd slice name as its path: "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice";
// "-.slice" (the root slice) -> "/". Throws Error(input_invalid) for a malformed name.
std::string expand_slice(std::string_view slice);

// The cgroup v2 path ("/a/b") of a process, from the "0::" line of /proc/PID/cgroup text.
// Throws Error(input_invalid) when there is none.
std::string unified_cgroup_of(std::string_view proc_cgroup);

}  // namespace mcpwarden
