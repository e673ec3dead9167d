// SPDX-License-Identifier: Apache-2.0
// Bounded costs and pinned commands of standalone runs (docs/security.md): RLIMIT_NOFILE of
// the server, the persistent cache's disk bound, `command:` refusing other commands, and audit
// lines on a shared stderr that cannot pass for the server's.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fd.h"
#include "net_fixtures.h"
#include "sandbox_cache.h"

using namespace harness;
using namespace netfix;
namespace fs = std::filesystem;

namespace {

class Hardening : public KernelTest {};

// A file of `size` bytes owned by the sandbox user, last used `age` seconds ago.
void cache_file(const std::string& path, std::size_t size, int age) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << std::string(size, 'x');
    ::chown(path.c_str(), 65534, 65534);
    auto when = std::chrono::system_clock::now() - std::chrono::seconds(age);
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = std::chrono::system_clock::to_time_t(when);
    times[0].tv_nsec = times[1].tv_nsec = 0;
    ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

}  // namespace

TEST_F(Hardening, OpenFilesLimitOfTheServer) {
    REQUIRE_ROOT();
    auto dflt = warden({"run", "--policy", write_policy("hard-nofile-default", ""), "--", "sh", "-c", "ulimit -Sn; ulimit -Hn"});
    EXPECT_EQ(dflt.exit_code, 0) << dflt.err;
    EXPECT_EQ(dflt.out, "4096\n4096\n");
    EXPECT_EQ(dflt.report["limits"]["open_files"], 4096);
    auto low = warden({"run", "--policy", write_policy("hard-nofile", "limits:\n  open_files: 64\n"), "--", "sh", "-c",
                       "ulimit -Sn; ulimit -Hn; ulimit -n 100000 2>/dev/null || echo refused"});
    EXPECT_EQ(low.exit_code, 0) << low.err;
    EXPECT_EQ(low.out, "64\n64\nrefused\n") << "the server cannot raise its own limit";
    EXPECT_EQ(low.report["limits"]["open_files"], 64);
}

TEST_F(Hardening, CacheOverItsBoundIsTrimmedOldestFirst) {
    REQUIRE_ROOT();
    std::string policy = write_policy("hard-cache", "cache:\n  max_size: 1M\n");
    // The first run makes the pair's own cache (its uid's: identity.h); the test fills it.
    ASSERT_EQ(warden({"run", "--policy", policy, "--", "true"}).exit_code, 0);
    std::string cache = sandbox_cache_dir("hard-cache");
    ASSERT_FALSE(cache.empty());
    // Before the run: 1.5 MiB, the oldest file must go.
    cache_file(cache + "/npm/old", 512 << 10, 3000);
    cache_file(cache + "/npm/mid", 512 << 10, 2000);
    cache_file(cache + "/pip/new", 512 << 10, 1000);
    // A link in the cache to a file outside it: never followed, never removed through.
    std::string outside = state_dir() + "/hard-cache-outside";
    std::ofstream(outside) << std::string(4 << 20, 'y');
    fs::create_symlink(outside, cache + "/link");
    // The run itself writes 2 MiB more.
    auto r = warden({"run", "--policy", policy, "--", "sh", "-c",
                     "test -f $XDG_CACHE_HOME/npm/old && echo old-kept; head -c 2097152 /dev/zero > $XDG_CACHE_HOME/fresh; echo wrote"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "wrote\n") << "the oldest file went before the server started";
    EXPECT_LE(disk_use(cache), 1u << 20);
    EXPECT_TRUE(fs::exists(outside));
    EXPECT_EQ(fs::file_size(outside), 4u << 20);
    EXPECT_FALSE(fs::exists(cache + "/npm/old"));
    EXPECT_EQ(r.report["cache"]["max_size"], 1 << 20);
    EXPECT_GT(r.report["cache"]["trimmed_bytes"].get<std::uint64_t>(), 2u << 20) << r.report.dump();
    EXPECT_LE(r.report["cache"]["bytes"].get<std::uint64_t>(), 1u << 20);
    fs::remove(outside);
    fs::remove_all(cache);
}

TEST_F(Hardening, CacheOverItsBoundRefusesTheRunWhenAsked) {
    REQUIRE_ROOT();
    std::string policy = write_policy("hard-cache-refuse", "cache:\n  max_size: 256K\n  on_full: refuse\n");
    // The first run makes the pair's own cache (its uid's: identity.h); the test fills it.
    ASSERT_EQ(warden({"run", "--policy", policy, "--", "true"}).exit_code, 0);
    std::string cache = sandbox_cache_dir("hard-cache-refuse");
    ASSERT_FALSE(cache.empty());
    cache_file(cache + "/blob", 512 << 10, 10);
    std::string marker = cache + "/ran";
    auto r = warden({"run", "--policy", policy, "--", "sh", "-c", "touch $XDG_CACHE_HOME/ran"});
    EXPECT_EQ(r.exit_code, 125) << r.err;
    EXPECT_NE(r.err.find("cache.max_size"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(marker));
    EXPECT_TRUE(fs::exists(cache + "/blob")) << "refuse mode removes nothing";
    fs::remove_all(cache);
}

TEST_F(Hardening, PinnedCommandIsTheOnlyOneThatRuns) {
    REQUIRE_ROOT();
    std::string policy = write_policy("hard-pinned", "command:\n  prefix: [sh, -c]\n  args: [\"echo *\"]\n");
    auto ok = warden({"run", "--policy", policy, "--", "sh", "-c", "echo hello"});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_EQ(ok.out, "hello\n");
    auto full_path = warden({"run", "--policy", policy, "--", "/bin/sh", "-c", "echo by-path"});
    EXPECT_EQ(full_path.exit_code, 0) << full_path.err;
    for (const std::vector<std::string>& cmd : {std::vector<std::string>{"/usr/bin/env"},
                                                std::vector<std::string>{"sh", "-c", "id"},
                                                std::vector<std::string>{"sh", "-c", "echo x", "extra"},
                                                std::vector<std::string>{"bash", "-c", "echo x"}}) {
        std::vector<std::string> args{"run", "--policy", policy, "--"};
        args.insert(args.end(), cmd.begin(), cmd.end());
        auto r = warden(args);
        EXPECT_EQ(r.exit_code, 67) << cmd[0] << ": " << r.err;
        EXPECT_NE(r.err.find("runs only `sh -c ...`"), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
}

TEST_F(Hardening, AuditOnSharedStderrIsPrefixed) {
    REQUIRE_ROOT();
    std::string np = program("netprobe");
    auto r = command({MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--policy",
                      write_policy("hard-prefix", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n"), "--", "sh", "-c",
                      np + " tcp4 127.0.0.7 9 >/dev/null; echo '{\"event\":\"egress_denied\",\"fake\":true}' >&2"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    bool audited = false, fake_prefixed = false;
    for (const auto& line : split_lines(r.err)) {
        if (line.rfind("mcpwarden-audit: {", 0) == 0) {
            auto j = nlohmann::json::parse(line.substr(17), nullptr, false);
            audited = audited || (j.is_object() && j.value("address", "") == "127.0.0.7");
            fake_prefixed = fake_prefixed || line.find("\"fake\"") != std::string::npos;
        }
    }
    EXPECT_TRUE(audited) << r.err;
    EXPECT_FALSE(fake_prefixed) << "the server's own line passed for an audit line";
}

// The seccomp filter refuses whole groups of system calls (docs/security.md): what real servers
// do must still work under it. Python and Node are on the host, not in the VM guest: the VM
// stage excludes *HostOnly*. Go is not installed on the hosts that run this; busybox runs in the
// DNS and MCP suites.
TEST_F(Hardening, HostOnlyPythonAndNodeRunUnderTheFilter) {
    REQUIRE_ROOT();
    TcpListener listener("127.0.0.2");
    std::string policy = write_policy("hard-langs", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    // What the MCP SDKs' stdio servers do: threads, an event loop, child processes, a connection
    // to an allowed address, files in $TMPDIR.
    const std::string python = R"py(
import asyncio, os, re, socket, subprocess, sys, tempfile, threading
port = int(sys.argv[1])
print("seccomp", re.search(r"Seccomp:\s+(\d)", open("/proc/self/status").read()).group(1))
squares = []
threads = [threading.Thread(target=lambda i=i: squares.append(i * i)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("threads", sum(squares))
child = subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True, text=True, check=True)
print("subprocess", child.stdout.strip())
with socket.create_connection(("127.0.0.2", port), timeout=5) as s:
    data = b""
    while chunk := s.recv(4096): data += chunk
    print("socket", data.split(b"\r\n\r\n", 1)[1].decode())
with tempfile.NamedTemporaryFile("w+", dir=os.environ["TMPDIR"]) as f:
    f.write("x" * 100000); f.flush(); f.seek(0)
    print("file", len(f.read()))
async def main():
    p = await asyncio.create_subprocess_exec("true")
    r, w = await asyncio.open_connection("127.0.0.2", port)
    data = await r.read()
    w.close()
    print("asyncio", await p.wait(), data.decode().endswith("ok"))
asyncio.run(main())
)py";
    auto py = warden({"run", "--policy", policy, "--", "/usr/bin/python3", "-c", python, listener.port()});
    EXPECT_EQ(py.exit_code, 0) << py.err;
    EXPECT_EQ(py.out, "seccomp 2\nthreads 140\nsubprocess 42\nsocket ok\nfile 100000\nasyncio 0 True\n") << py.err;
    const std::string node = R"js(
const { Worker } = require("worker_threads");
const cp = require("child_process"), fs = require("fs"), net = require("net");
const os = require("os"), path = require("path");
console.log("seccomp", fs.readFileSync("/proc/self/status", "utf8").match(/Seccomp:\s+(\d)/)[1]);
new Worker("require('worker_threads').parentPort.postMessage(6 * 7)", { eval: true }).on("message", async (m) => {
  console.log("worker", m);
  console.log("child", cp.execFileSync("sh", ["-c", "echo $((6 * 7))"]).toString().trim());
  const f = path.join(os.tmpdir(), "node-" + process.pid);
  await fs.promises.writeFile(f, "x".repeat(100000));
  console.log("file", (await fs.promises.readFile(f, "utf8")).length, os.tmpdir() === process.env.TMPDIR);
  await fs.promises.unlink(f);
  let data = "";
  net.connect(Number(process.argv[1]), "127.0.0.2")
    .on("data", (d) => (data += d))
    .on("end", () => console.log("socket", data.split("\r\n\r\n")[1]))
    .on("error", (e) => console.log("socket", e.code));
});
)js";
    auto js = warden({"run", "--policy", policy, "--", "node", "-e", node, listener.port()});
    EXPECT_EQ(js.exit_code, 0) << js.err;
    EXPECT_EQ(js.out, "seccomp 2\nworker 42\nchild 42\nfile 100000 true\nsocket ok\n") << js.err;
    EXPECT_EQ(listener.accepted(), 3) << "connections that reached the allowed listener";
}
