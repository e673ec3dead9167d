// SPDX-License-Identifier: Apache-2.0
// The OCI hook's inputs: the runtime's state, the bundle's cgroupsPath in each form the
// runtimes and the kubelet write, and /proc/PID/cgroup.
#include <gtest/gtest.h>

#include "error.h"
#include "oci.h"

using namespace mcpwarden;

namespace {

void expect_invalid(const std::function<void()>& f, const std::string& part) {
    try {
        f();
        ADD_FAILURE() << "no error (expected one mentioning " << part << ")";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::input_invalid) << e.what();
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(OciState, AsPodmanWritesItAtCreateRuntime) {
    auto s = parse_oci_state(
        R"({"ociVersion":"1.0.2-dev","id":"4f1c2d3e4f5a6b7c8d9e","status":"creating","pid":4242,)"
        R"("bundle":"/var/lib/containers/storage/overlay-containers/4f1c/userdata",)"
        R"("annotations":{"io.mcpwarden.policy":"github","io.container.manager":"libpod"}})");
    EXPECT_EQ(s.id, "4f1c2d3e4f5a6b7c8d9e");
    EXPECT_EQ(s.status, "creating");
    EXPECT_EQ(s.pid, 4242);
    EXPECT_EQ(s.bundle, "/var/lib/containers/storage/overlay-containers/4f1c/userdata");
    auto want = oci_request(s);
    ASSERT_TRUE(want);
    EXPECT_EQ(want->policy, "github");
    EXPECT_FALSE(want->audit_only);
}

TEST(OciState, PoststopHasNoPid) {
    auto s = parse_oci_state(R"({"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"})");
    EXPECT_EQ(s.pid, 0);
    EXPECT_TRUE(s.annotations.empty());
    EXPECT_FALSE(oci_request(s)) << "no annotation: nothing to do";
}

TEST(OciState, BadStatesAreNamed) {
    expect_invalid([] { parse_oci_state("not json"); }, "not a JSON object");
    expect_invalid([] { parse_oci_state("[1]"); }, "not a JSON object");
    expect_invalid([] { parse_oci_state(R"({"id":"x"})"); }, "ociVersion");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":""})"); }, "\"id\" is empty");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":7})"); }, "\"id\" is not a string");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":"x","pid":-1})"); }, "pid");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":"x","pid":1.5})"); }, "pid");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":"x","annotations":[]})"); }, "annotations");
    expect_invalid([] { parse_oci_state(R"({"ociVersion":"1","id":"x","annotations":{"a":1}})"); }, "annotation a");
    expect_invalid([] { parse_oci_state(std::string(2 << 20, ' ')); }, "over 1 MiB");
}

TEST(OciState, AnnotationsAreCheckedWhenPresent) {
    auto state = [](const std::string& annotations) {
        return parse_oci_state(R"({"ociVersion":"1","id":"x","annotations":)" + annotations + "}");
    };
    auto r = oci_request(state(R"({"io.mcpwarden.policy":"p","io.mcpwarden.audit-only":"true"})"));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->audit_only);
    EXPECT_FALSE(oci_request(state(R"({"io.mcpwarden.policy":"p","io.mcpwarden.audit-only":"0"})"))->audit_only);
    expect_invalid([&] { oci_request(state(R"({"io.mcpwarden.policy":""})")); }, "is empty");
    expect_invalid([&] { oci_request(state(R"({"io.mcpwarden.policy":"p","io.mcpwarden.audit-only":"yes"})")); },
                   "true or false");
}

TEST(OciConfig, CgroupsPathIsRead) {
    EXPECT_EQ(oci_cgroups_path(R"({"linux":{"cgroupsPath":"/libpod_parent/libpod-abc"}})"), "/libpod_parent/libpod-abc");
    EXPECT_EQ(oci_cgroups_path(R"({"linux":{}})"), "");
    EXPECT_EQ(oci_cgroups_path(R"({"process":{}})"), "");
    expect_invalid([] { oci_cgroups_path(R"({"linux":{"cgroupsPath":3}})"); }, "not a string");
    expect_invalid([] { oci_cgroups_path("{"); }, "config.json");
}

TEST(OciCgroupPath, SystemdSlicesExpandAsRuncDoes) {
    EXPECT_EQ(expand_slice("system.slice"), "/system.slice");
    EXPECT_EQ(expand_slice("machine.slice"), "/machine.slice");
    EXPECT_EQ(expand_slice("-.slice"), "/");
    EXPECT_EQ(expand_slice("a-b-c.slice"), "/a.slice/a-b.slice/a-b-c.slice");
    for (const char* bad : {"a", ".slice", "a--b.slice", "-a.slice", "a-.slice", "a/b.slice"})
        expect_invalid([&] { expand_slice(bad); }, "slice name");
}

TEST(OciCgroupPath, EveryFormRuntimesAndTheKubeletWrite) {
    // cgroupfs driver: absolute paths, as they are (kubelet: kubepods/<qos>/pod<uid>/<id>,
    // Guaranteed pods directly under kubepods).
    EXPECT_EQ(expand_cgroups_path("/libpod_parent/libpod-abc"), "/libpod_parent/libpod-abc");
    EXPECT_EQ(expand_cgroups_path("/kubepods/burstable/pod1234-56/abc"), "/kubepods/burstable/pod1234-56/abc");
    EXPECT_EQ(expand_cgroups_path("/kubepods/besteffort/pod1234-56/abc"), "/kubepods/besteffort/pod1234-56/abc");
    EXPECT_EQ(expand_cgroups_path("/kubepods/pod1234-56/abc"), "/kubepods/pod1234-56/abc");
    // systemd driver: slice:prefix:name, for each QoS class of the kubelet.
    EXPECT_EQ(expand_cgroups_path("kubepods-burstable-pod1234_56.slice:cri-containerd:abc"),
              "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_56.slice/cri-containerd-abc.scope");
    EXPECT_EQ(expand_cgroups_path("kubepods-besteffort-pod1234_56.slice:crio:abc"),
              "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_56.slice/crio-abc.scope");
    EXPECT_EQ(expand_cgroups_path("kubepods-pod1234_56.slice:crio:abc"),
              "/kubepods.slice/kubepods-pod1234_56.slice/crio-abc.scope");
    // podman with the systemd manager, and the defaults runc fills in.
    EXPECT_EQ(expand_cgroups_path("machine.slice:libpod:abc"), "/machine.slice/libpod-abc.scope");
    EXPECT_EQ(expand_cgroups_path(":libpod:abc"), "/system.slice/libpod-abc.scope");
    EXPECT_EQ(expand_cgroups_path("kubepods.slice::kubepods-pod1.slice"), "/kubepods.slice/kubepods-pod1.slice");
    // Relative: under the runtime's parent.
    EXPECT_EQ(expand_cgroups_path("ctr/abc", "/runtime"), "/runtime/ctr/abc");
    EXPECT_EQ(expand_cgroups_path("abc"), "/abc");
}

TEST(OciCgroupPath, FormsNoRuntimeWritesAreRefused) {
    expect_invalid([] { expand_cgroups_path(""); }, "empty");
    expect_invalid([] { expand_cgroups_path("/a/../b"); }, "..");
    expect_invalid([] { expand_cgroups_path("../b"); }, "..");
    expect_invalid([] { expand_cgroups_path("a.slice:p"); }, "slice:prefix:name");
    expect_invalid([] { expand_cgroups_path("a.slice:p:n:x"); }, "slice:prefix:name");
    expect_invalid([] { expand_cgroups_path("a.slice:p:"); }, "unit name");
    expect_invalid([] { expand_cgroups_path("a.slice:p:x/y"); }, "unit name");
    expect_invalid([] { expand_cgroups_path("notaslice:p:n"); }, "slice name");
    expect_invalid([] { expand_cgroups_path("a", "relative"); }, "not absolute");
}

TEST(OciCgroupPath, TheUnifiedLineOfProcCgroup) {
    EXPECT_EQ(unified_cgroup_of("12:memory:/user.slice\n0::/libpod_parent/libpod-abc\n"), "/libpod_parent/libpod-abc");
    EXPECT_EQ(unified_cgroup_of("0::/\n"), "/");
    expect_invalid([] { unified_cgroup_of("12:memory:/x\n"); }, "no 0:: line");
}
