// SPDX-License-Identifier: Apache-2.0
#include "oci.h"

#include <nlohmann/json.hpp>

#include "error.h"

namespace mcpwarden {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxStateBytes = 1 << 20;

[[noreturn]] void invalid(const std::string& what) { throw Error(ErrorKind::input_invalid, what); }

std::string string_field(const json& j, const char* name, bool required) {
    auto it = j.find(name);
    if (it == j.end()) {
        if (required) invalid(std::string("the OCI state has no \"") + name + "\"");
        return "";
    }
    if (!it->is_string()) invalid(std::string("the OCI state's \"") + name + "\" is not a string");
    return it->get<std::string>();
}

}  // namespace

OciState parse_oci_state(std::string_view text) {
    if (text.size() > kMaxStateBytes)
        invalid("the OCI state is " + std::to_string(text.size()) + " bytes, over 1 MiB");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) invalid("the OCI state on stdin is not a JSON object");
    OciState s;
    s.oci_version = string_field(j, "ociVersion", true);
    s.id = string_field(j, "id", true);
    if (s.id.empty()) invalid("the OCI state's \"id\" is empty");
    s.status = string_field(j, "status", false);
    s.bundle = string_field(j, "bundle", false);
    if (auto it = j.find("pid"); it != j.end()) {
        if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > 0x3fffffff)
            invalid("the OCI state's \"pid\" is not a process id");
        s.pid = static_cast<pid_t>(it->get<std::int64_t>());
    }
    if (auto it = j.find("annotations"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) invalid("the OCI state's \"annotations\" is not an object");
        for (const auto& [k, v] : it->items()) {
            if (!v.is_string()) invalid("the OCI state's annotation " + k + " is not a string");
            s.annotations[k] = v.get<std::string>();
        }
    }
    return s;
}

std::optional<OciRequest> oci_request(const OciState& state) {
    auto p = state.annotations.find(kOciPolicyAnnotation);
    if (p == state.annotations.end()) return std::nullopt;
    OciRequest r;
    r.policy = p->second;
    if (r.policy.empty()) invalid(std::string("the annotation ") + kOciPolicyAnnotation + " is empty");
    if (auto a = state.annotations.find(kOciAuditOnlyAnnotation); a != state.annotations.end()) {
        if (a->second == "true" || a->second == "1") {
            r.audit_only = true;
        } else if (a->second != "false" && a->second != "0") {
            invalid(std::string("the annotation ") + kOciAuditOnlyAnnotation + " is \"" + a->second +
                    "\"; it is true or false");
        }
    }
    return r;
}

std::string oci_cgroups_path(std::string_view config_json) {
    json j = json::parse(config_json.begin(), config_json.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) invalid("the bundle's config.json is not a JSON object");
    auto linux_it = j.find("linux");
    if (linux_it == j.end() || !linux_it->is_object()) return "";
    auto it = linux_it->find("cgroupsPath");
    if (it == linux_it->end()) return "";
    if (!it->is_string()) invalid("config.json's linux.cgroupsPath is not a string");
    return it->get<std::string>();
}

std::string expand_slice(std::string_view slice) {
    constexpr std::string_view suffix = ".slice";
    if (slice.size() <= suffix.size() || slice.substr(slice.size() - suffix.size()) != suffix ||
        slice.find('/') != std::string_view::npos)
        invalid("\"" + std::string(slice) + "\" is not a systemd slice name");
    if (slice == "-.slice") return "/";
    std::string_view name = slice.substr(0, slice.size() - suffix.size());
    if (name.front() == '-' || name.back() == '-' || name.find("--") != std::string_view::npos)
        invalid("\"" + std::string(slice) + "\" is not a systemd slice name");
    // Each dash-separated prefix is a parent slice.
    std::string path, prefix;
    std::size_t start = 0;
    for (;;) {
        std::size_t dash = name.find('-', start);
        std::string_view part = name.substr(start, dash == std::string_view::npos ? std::string_view::npos : dash - start);
        prefix += (prefix.empty() ? "" : "-") + std::string(part);
        path += "/" + prefix + std::string(suffix);
        if (dash == std::string_view::npos) break;
        start = dash + 1;
    }
    return path;
}

std::string expand_cgroups_path(std::string_view path, std::string_view parent) {
    auto no_dotdot = [](const std::string& p) {
        std::size_t start = 0;
        while (start <= p.size()) {
            std::size_t slash = p.find('/', start);
            if (slash == std::string::npos) slash = p.size();
            if (p.compare(start, slash - start, "..") == 0) invalid("the cgroups path " + p + " has a .. component");
            start = slash + 1;
        }
        return p;
    };
    if (path.empty()) invalid("the cgroups path is empty");
    if (path.front() == '/') return no_dotdot(std::string(path));
    // systemd driver: "slice:prefix:name".
    std::size_t c1 = path.find(':');
    if (c1 != std::string_view::npos) {
        std::size_t c2 = path.find(':', c1 + 1);
        if (c2 == std::string_view::npos || path.find(':', c2 + 1) != std::string_view::npos)
            invalid("the cgroups path " + std::string(path) + " is neither a path nor slice:prefix:name");
        std::string_view slice = path.substr(0, c1), prefix = path.substr(c1 + 1, c2 - c1 - 1),
                         name = path.substr(c2 + 1);
        if (name.empty() || name.find('/') != std::string_view::npos || prefix.find('/') != std::string_view::npos)
            invalid("the cgroups path " + std::string(path) + " has no usable unit name");
        std::string base = expand_slice(slice.empty() ? "system.slice" : slice);
        std::string unit;
        if (name.size() > 6 && name.substr(name.size() - 6) == ".slice") {
            unit = std::string(name);  // a slice of its own (kubelet's pod slices)
        } else {
            unit = (prefix.empty() ? "" : std::string(prefix) + "-") + std::string(name) + ".scope";
        }
        return (base == "/" ? "" : base) + "/" + no_dotdot(unit);
    }
    std::string p = std::string(parent);
    if (p.empty() || p.front() != '/') invalid("the cgroup parent " + p + " is not absolute");
    if (p.back() != '/') p += "/";
    return no_dotdot(p + std::string(path));
}

std::string unified_cgroup_of(std::string_view proc_cgroup) {
    std::size_t start = 0;
    while (start < proc_cgroup.size()) {
        std::size_t nl = proc_cgroup.find('\n', start);
        if (nl == std::string_view::npos) nl = proc_cgroup.size();
        std::string_view line = proc_cgroup.substr(start, nl - start);
        if (line.substr(0, 3) == "0::") return std::string(line.substr(3));
        start = nl + 1;
    }
    invalid("the process is in no cgroup v2 (no 0:: line in /proc/PID/cgroup)");
}

}  // namespace mcpwarden
