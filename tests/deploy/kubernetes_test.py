#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Checks deploy/kubernetes/ (ctest label unit): the fields the node agent needs (privileged,
# the host's PID namespace, the host paths it mounts), that the hook file an image built by
# the Containerfile installs names the path where the DaemonSet copies the binary (the
# Containerfile's cmake configure run here, and deploy/'s install rules), that the
# example pod's policy is in the policies ConfigMap and every policy there is valid
# (`mcpwarden policy validate`), that node.sh installs what the hook file names, and that
# `kubectl apply --dry-run=client --validate=false -f deploy/kubernetes/` accepts the files
# (against a stand-in API server on loopback that answers discovery and 404: kubectl needs
# a server's resource list even for a client-side dry run). In CI kubectl is required.
#
#   kubernetes_test.py SOURCE_DIR MCPWARDEN_BIN BUILT_HOOK_JSON INSTALL_FULL_BINDIR INSTALL_DATADIR CMAKE
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

try:
    import yaml
except ImportError:
    sys.exit("kubernetes_test.py: needs PyYAML (apt-get install python3-yaml; scripts/setup.sh installs it)")

SOURCE, MCPWARDEN, BUILT_HOOK, FULL_BINDIR, DATADIR, CMAKE = sys.argv[1:7]
DEPLOY = os.path.join(SOURCE, "deploy", "kubernetes")
PREFIX = "/opt/mcpwarden"  # what the Containerfile configures and node.sh copies to


def load_objects():
    objects = {}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                meta = doc["metadata"]
                objects[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return objects


OBJECTS = load_objects()


def only(kind):
    found = [o for (k, _, _), o in OBJECTS.items() if k == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind} in deploy/kubernetes"
    return found[0]


def read(path):
    with open(path) as f:
        return f.read()


class Manifests(unittest.TestCase):
    def setUp(self):
        self.ds = only("DaemonSet")
        self.spec = self.ds["spec"]["template"]["spec"]
        self.volumes = {v["name"]: v for v in self.spec["volumes"]}
        self.agent = next(c for c in self.spec["containers"] if c["name"] == "agent")
        self.init = next(c for c in self.spec["initContainers"] if c["name"] == "install-hook")

    def mounted(self, container, path):
        """The volume mounted at `path` in `container`."""
        for m in container.get("volumeMounts", []):
            if m["mountPath"] == path:
                self.assertNotIn("subPath", m, f"{path}: a subPath mount never sees ConfigMap updates")
                return self.volumes[m["name"]]
        self.fail(f"nothing is mounted at {path} in container {container['name']}")

    def host_path(self, container, path):
        return self.mounted(container, path).get("hostPath", {}).get("path")

    def agent_config(self):
        volume = self.mounted(self.agent, "/etc/mcpwarden/agent")
        cm = OBJECTS[("ConfigMap", "mcpwarden", volume["configMap"]["name"])]
        return yaml.safe_load(cm["data"]["agent.yaml"])

    def test_namespace_and_service_account(self):
        self.assertIn(("Namespace", "", "mcpwarden"), OBJECTS)
        self.assertEqual(self.ds["metadata"]["namespace"], "mcpwarden")
        account = self.spec["serviceAccountName"]
        self.assertIn(("ServiceAccount", "mcpwarden", account), OBJECTS)

    def test_privileged_in_the_hosts_pid_namespace(self):
        self.assertIs(self.spec.get("hostPID"), True)
        for c in self.spec["containers"] + self.spec["initContainers"]:
            self.assertIs(c.get("securityContext", {}).get("privileged"), True, c["name"])

    def test_the_agent_mounts_the_hosts_bpffs_cgroups_socket_and_state(self):
        self.assertEqual(self.host_path(self.agent, "/sys/fs/bpf"), "/sys/fs/bpf")
        self.assertEqual(self.host_path(self.agent, "/sys/fs/cgroup"), "/sys/fs/cgroup")
        config = self.agent_config()
        # The hook runs on the node with the default socket: the node's directory of it.
        self.assertEqual(config["socket"], "/run/mcpwarden/agent.sock")
        self.assertEqual(self.host_path(self.agent, os.path.dirname(config["socket"])), "/run/mcpwarden")
        self.assertEqual(self.host_path(self.agent, config["state_dir"]), config["state_dir"])
        self.assertEqual(self.host_path(self.agent, os.path.dirname(config["audit"])), os.path.dirname(config["audit"]))
        hooks = self.host_path(self.agent, "/etc/containers/oci/hooks.d")
        self.assertIn(hooks, ["/etc/containers/oci/hooks.d", "/usr/share/containers/oci/hooks.d"])

    def test_policies_come_from_a_configmap_mounted_as_the_policy_directory(self):
        config = self.agent_config()
        volume = self.mounted(self.agent, config["policy_dir"])
        self.assertIn("configMap", volume)
        self.assertIn(("ConfigMap", "mcpwarden", volume["configMap"]["name"]), OBJECTS)
        # node.sh watches that directory and reloads the agent's policies when it changes.
        self.assertEqual(self.agent["args"], ["agent", "/etc/mcpwarden/agent/agent.yaml", config["policy_dir"]])

    def test_the_init_container_installs_the_hook_where_crio_reads_it(self):
        verb, root, hooks = self.init["args"]
        self.assertEqual(verb, "install")
        self.assertEqual(self.host_path(self.init, hooks), "/etc/containers/oci/hooks.d")
        self.assertEqual(self.host_path(self.init, root + PREFIX), PREFIX)

    def test_the_example_pod_is_annotated_with_a_policy_of_the_configmap(self):
        pod = only("Pod")
        name = pod["metadata"]["annotations"]["io.mcpwarden.policy"]
        self.assertEqual(name, "github")
        volume = self.mounted(self.agent, self.agent_config()["policy_dir"])
        cm = OBJECTS[("ConfigMap", "mcpwarden", volume["configMap"]["name"])]
        self.assertIn(name + ".yaml", cm["data"])
        # The same egress as the shipped policy.
        shipped = yaml.safe_load(read(os.path.join(SOURCE, "policies", "github.yaml")))
        self.assertEqual(yaml.safe_load(cm["data"]["github.yaml"])["egress"], shipped["egress"])

    def test_every_policy_of_the_configmap_is_valid(self):
        volume = self.mounted(self.agent, self.agent_config()["policy_dir"])
        cm = OBJECTS[("ConfigMap", "mcpwarden", volume["configMap"]["name"])]
        with tempfile.TemporaryDirectory() as d:
            files = []
            for key, text in cm["data"].items():
                self.assertTrue(key.endswith(".yaml"), key)
                self.assertEqual(yaml.safe_load(text)["name"], key[:-5], f"{key}: its name must be its file's")
                files.append(os.path.join(d, key))
                with open(files[-1], "w") as f:
                    f.write(text)
            r = subprocess.run([MCPWARDEN, "policy", "validate", "--strict", *files], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class HookFile(unittest.TestCase):
    def test_the_built_hook_file_names_the_installed_binary(self):
        hook = json.loads(read(BUILT_HOOK))
        self.assertEqual(hook["hook"]["path"], os.path.join(FULL_BINDIR, "mcpwarden"))
        self.assertEqual(hook["hook"]["args"][:2], ["mcpwarden", "oci-hook"])
        self.assertEqual(sorted(hook["stages"]), ["createRuntime", "poststop"])
        (pattern, value), = hook["when"]["annotations"].items()
        self.assertTrue(re.fullmatch(pattern, "io.mcpwarden.policy"))
        self.assertFalse(re.search(pattern, "io.mcpwarden.policyx"))

    def test_the_image_installs_the_hook_naming_the_path_the_daemonset_copies_to(self):
        containerfile = read(os.path.join(DEPLOY, "Containerfile"))
        self.assertRegex(containerfile, r"(?m)^FROM docker\.io/library/debian:12")
        # The Containerfile's own configure line, run here (configuring takes a second and
        # builds nothing), then the install rules of deploy/ and of the binary.
        line = re.search(r"RUN cmake -S /src -B /build((?:[^&]|\\\n)*)\\\n\s*&& cmake --build", containerfile)
        self.assertIsNotNone(line, "no `cmake -S /src -B /build ...` line in the Containerfile")
        flags = line.group(1).replace("\\\n", " ").split()
        self.assertIn(f"-DCMAKE_INSTALL_PREFIX={PREFIX}", flags)
        with tempfile.TemporaryDirectory() as d:
            build, dest = os.path.join(d, "build"), os.path.join(d, "dest")
            r = subprocess.run([CMAKE, "-S", SOURCE, "-B", build, *flags], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run([CMAKE, "-P", os.path.join(build, "deploy", "cmake_install.cmake")],
                               env=dict(os.environ, DESTDIR=dest), capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            installed_hook = dest + PREFIX + "/" + DATADIR + "/containers/oci/hooks.d/mcpwarden.json"
            hook = json.loads(read(installed_hook))
            binary_rules = read(os.path.join(build, "userspace", "cmake_install.cmake"))
        self.assertEqual(hook["hook"]["path"], PREFIX + "/bin/mcpwarden")
        # The binary's install rule puts it where the hook file says.
        self.assertIn('file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/bin" TYPE EXECUTABLE FILES', binary_rules)
        self.assertIn(f'set(CMAKE_INSTALL_PREFIX "{PREFIX}")', binary_rules)
        # node.sh copies that binary and that hook file to the same paths on the node.
        node_sh = read(os.path.join(DEPLOY, "node.sh"))
        self.assertIn(f"PREFIX={PREFIX}\n", node_sh)
        self.assertIn("MCPWARDEN=${MCPWARDEN:-$PREFIX/bin/mcpwarden}", node_sh)
        self.assertIn("$PREFIX/" + DATADIR + "/containers/oci/hooks.d/mcpwarden.json", node_sh)
        self.assertIn('mv -f "$root$PREFIX/bin/.mcpwarden.new" "$root$PREFIX/bin/mcpwarden"', node_sh)
        self.assertIn("/opt/mcpwarden/libexec/mcpwarden/node.sh", containerfile)

    def test_node_sh_installs_the_binary_and_the_hook_file(self):
        with tempfile.TemporaryDirectory() as root:
            env = dict(os.environ, MCPWARDEN=MCPWARDEN, MCPWARDEN_HOOK_FILE=BUILT_HOOK)
            hooks = os.path.join(root, "etc/containers/oci/hooks.d")
            r = subprocess.run(["sh", os.path.join(DEPLOY, "node.sh"), "install", root, hooks],
                               env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            installed = root + PREFIX + "/bin/mcpwarden"
            self.assertTrue(os.access(installed, os.X_OK))
            self.assertEqual(read(os.path.join(hooks, "mcpwarden.json")), read(BUILT_HOOK))
            self.assertEqual(sorted(os.listdir(hooks)), ["mcpwarden.json"])  # no temporary left
            self.assertEqual(sorted(os.listdir(os.path.dirname(installed))), ["mcpwarden"])


# A stand-in for the API server: discovery for the kinds of deploy/kubernetes, 404 for any
# object (so that apply computes a creation).
RESOURCES = {
    "v1": [("namespaces", "Namespace", False), ("serviceaccounts", "ServiceAccount", True),
           ("configmaps", "ConfigMap", True), ("pods", "Pod", True)],
    "apps/v1": [("daemonsets", "DaemonSet", True)],
}


class StandIn(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def resources(self, gv):
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": [{"name": n, "singularName": "", "namespaced": ns, "kind": k,
                               "verbs": ["create", "get", "list", "patch", "update", "delete"]}
                              for n, k, ns in RESOURCES[gv]]}

    def do_GET(self):
        path = self.path.split("?")[0]
        groups = [gv for gv in RESOURCES if "/" in gv]
        if path == "/version":
            return self.answer(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        if path == "/api":
            return self.answer(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/api/v1":
            return self.answer(200, self.resources("v1"))
        if path == "/apis":
            return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in groups]})
        for gv in groups:
            if path == "/apis/" + gv:
                return self.answer(200, self.resources(gv))
        self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                          "code": 404, "message": "not found"})


class Kubectl(unittest.TestCase):
    def test_kubectl_apply_dry_run_accepts_the_manifests(self):
        kubectl = shutil.which("kubectl")
        if not kubectl:
            if os.environ.get("CI") == "true":
                self.fail("kubectl is not installed (the machine image has it; Debian 12's kubernetes-client works too)")
            self.skipTest("kubectl is not installed")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with tempfile.TemporaryDirectory() as home:
                config = os.path.join(home, "kubeconfig")
                with open(config, "w") as f:
                    yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "standin",
                                    "clusters": [{"name": "standin", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                                    "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
                                    "users": [{"name": "standin", "user": {}}]}, f)
                env = dict(os.environ, HOME=home, KUBECONFIG=config)
                r = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", DEPLOY + "/"],
                                   env=env, capture_output=True, text=True, timeout=120)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for (kind, _, name) in OBJECTS:
            self.assertRegex(r.stdout, rf"(?m)^{kind.lower()}(\.apps)?/{re.escape(name)} created \(dry run\)$", r.stdout)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
