// SPDX-License-Identifier: Apache-2.0
// Egress enforcement with real sockets, real cgroups and the real BPF programs: each case
// checks that the connection was refused (EPERM) or the datagram never arrived, and that an
// audit event names the denial.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "cgroup.h"
#include "enforcer.h"
#include "harness.h"
#include "net_fixtures.h"
#include "sandbox_cache.h"
#include "mcpwarden.h"

using namespace harness;
using namespace netfix;
using namespace std::chrono_literals;

namespace {

// Keys of the shared rule maps that belong to a policy id (none may remain after a run).
int entries_of(std::uint64_t policy_id) {
    auto objs = mcpwarden::BpfObjects::open();
    int count = 0;
    auto scan = [&](int fd, size_t key_size) {
        std::vector<unsigned char> key(key_size), next(key_size);
        void* prev = nullptr;
        while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
            std::uint64_t id = 0;
            for (int i = 0; i < 8; ++i) id = (id << 8) | next[4 + i];
            if (id == policy_id) ++count;
            key = next;
            prev = key.data();
        }
    };
    scan(objs->map("rules4"), sizeof(mw_key4));
    scan(objs->map("rules6"), sizeof(mw_key6));
    for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS; ++slot) {
        mw_slot_owner owner{};
        if (bpf_map_lookup_elem(objs->map("event_slot_owner"), &slot, &owner) == 0 && owner.policy_id == policy_id) ++count;
    }
    return count;
}

class Egress : public KernelTest {
protected:
    void TearDown() override {
        KernelTest::TearDown();
        if (::geteuid() != 0) return;
        // The last sandbox out removed the shared pins of this build too.
        std::string root = mcpwarden::BpfObjects::pin_root();
        EXPECT_NE(::access(root.c_str(), F_OK), 0) << "pins left in " << root;
    }
};

}  // namespace

TEST_F(Egress, TcpV4ByAddressPortAndRange) {
    TcpListener allowed("127.0.0.2"), ranged("127.0.0.4"), other_port("127.0.0.2"), denied_host("127.0.0.6"),
        in_net("127.0.0.9");
    int lo = std::stoi(ranged.port()) - 1, hi = std::stoi(ranged.port()) + 1;
    auto policy = write_policy("tcp4", "egress:\n  allow:\n"
                                       "    - cidr: 127.0.0.2/32\n      ports: [" + allowed.port() + "]\n"
                                       "    - cidr: 127.0.0.4\n      ports: [\"" + std::to_string(lo) + "-" + std::to_string(hi) + "\"]\n      protocol: tcp\n"
                                       "    - cidr: 127.0.0.0/28\n      ports: [" + denied_host.port() + ", " + in_net.port() + "]\n"
                                       "  deny:\n    - cidr: 127.0.0.6/32\n");
    auto s = sandboxed(policy, "$NP tcp4 127.0.0.2 " + allowed.port() + "; $NP tcp4 127.0.0.2 " + other_port.port() +
                                   "; $NP tcp4 127.0.0.4 " + ranged.port() + "; $NP tcp4 127.0.0.6 " + denied_host.port() +
                                   "; $NP tcp4 127.0.0.9 " + in_net.port() + "; $NP tcp4 127.0.0.3 " + allowed.port());
    ASSERT_EQ(s.result.exit_code, 0) << s.result.err;
    EXPECT_EQ(s.lines, (std::vector<std::string>{"ok", "EPERM", "ok", "EPERM", "ok", "EPERM"})) << s.result.out;
    EXPECT_EQ(allowed.accepted(), 1);
    EXPECT_EQ(other_port.accepted(), 0);
    EXPECT_EQ(ranged.accepted(), 1);
    EXPECT_EQ(denied_host.accepted(), 0);
    EXPECT_EQ(in_net.accepted(), 1);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.2", std::stoi(other_port.port()), "connect4"));
    EXPECT_TRUE(has_event(s.audit, "127.0.0.6", std::stoi(denied_host.port())));
    for (const auto& e : s.audit) {
        if (e["address"] == "127.0.0.6") {
            EXPECT_EQ(e["rule"].get<std::string>().rfind("deny cidr 127.0.0.6", 0), 0u) << e;
        }
        EXPECT_EQ(e["policy"], "tcp4");
        EXPECT_EQ(e["comm"], "netprobe");
        EXPECT_EQ(e["verdict"], "denied");
    }
    EXPECT_EQ(s.result.report["egress_denied"], 3);
    EXPECT_EQ(entries_of(s.result.report["egress_policy_id"].get<std::uint64_t>()), 0);
}

TEST_F(Egress, TcpV6AndV4MappedAddresses) {
    TcpListener v6("::1", AF_INET6), v6_other("::1", AF_INET6), v4("127.0.0.7");
    UdpReceiver udp("127.0.0.7");
    auto policy = write_policy("tcp6", "egress:\n  allow:\n    - cidr: ::1/128\n      ports: [" + v6.port() + "]\n");
    auto s = sandboxed(policy, "$NP tcp6 ::1 " + v6.port() + "; $NP tcp6 ::1 " + v6_other.port() +
                                   "; $NP tcp6 ::ffff:127.0.0.7 " + v4.port() +
                                   "; $NP udp-sendto 6 ::ffff:127.0.0.7 " + udp.port() +
                                   "; $NP udp6-sin 127.0.0.7 " + udp.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"ok", "EPERM", "EPERM", "EPERM", "EPERM"})) << s.result.out << s.result.err;
    EXPECT_EQ(v6.accepted(), 1);
    EXPECT_EQ(v6_other.accepted(), 0);
    EXPECT_EQ(v4.accepted(), 0);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(udp.received(), 0);
    // The v4-mapped attempts are reported as the IPv4 address they are.
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(v4.port()), "connect6"));
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(udp.port()), "sendmsg4"));
    EXPECT_TRUE(has_event(s.audit, "::1", std::stoi(v6_other.port())));

    // And a v4-mapped destination that IS allowed (as IPv4) goes through.
    auto allow4 = write_policy("tcp6b", "egress:\n  allow:\n    - cidr: 127.0.0.7/32\n");
    auto t = sandboxed(allow4, "$NP tcp6 ::ffff:127.0.0.7 " + v4.port() + "; $NP udp-sendto 6 ::ffff:127.0.0.7 " + udp.port());
    EXPECT_EQ(t.lines, (std::vector<std::string>{"ok", "ok"})) << t.result.out;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(udp.received(), 1);
}

TEST_F(Egress, UdpEveryDatagramIsChecked) {
    UdpReceiver ok("127.0.0.2"), bad("127.0.0.3");
    auto policy = write_policy("udp", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      protocol: udp\n");
    auto s = sandboxed(policy, "$NP udp-sendto 4 127.0.0.2 " + ok.port() + "; $NP udp-sendto 4 127.0.0.3 " + bad.port() +
                                   "; $NP udp-sendmsg 4 127.0.0.2 " + ok.port() + "; $NP udp-sendmsg 4 127.0.0.3 " + bad.port() +
                                   "; $NP udp-sendmmsg 127.0.0.2 " + ok.port() + " 127.0.0.3 " + bad.port() + " 127.0.0.2 " + ok.port() +
                                   "; $NP udp-connect-resend 127.0.0.2 " + ok.port() + " 127.0.0.3 " + bad.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"ok", "EPERM", "ok", "EPERM", "sent 1", "EPERM"})) << s.result.out << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(ok.received(), 4);  // sendto, sendmsg, the first of sendmmsg, the connected send
    EXPECT_EQ(bad.received(), 0);
    int events = 0;
    for (const auto& e : s.audit) events += e["address"] == "127.0.0.3";
    EXPECT_EQ(events, 4);
}

TEST_F(Egress, UnspecifiedAddressesCountAsLoopback) {
    TcpListener any4("0.0.0.0"), any6("::", AF_INET6);
    auto closed = write_policy("unspec", "egress:\n  allow:\n    - cidr: 0.0.0.0/0\n    - cidr: ::/0\n");
    auto s = sandboxed(closed, "$NP tcp4 0.0.0.0 " + any4.port() + "; $NP tcp6 :: " + any6.port() +
                                   "; $NP tcp6 ::ffff:0.0.0.0 " + any4.port() + "; $NP tcp4 127.0.0.1 " + any4.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM", "EPERM", "EPERM"}));
    EXPECT_EQ(any4.accepted() + any6.accepted(), 0);
    auto open = write_policy("unspec2", "egress:\n  allow:\n    - cidr: 127.0.0.1/32\n      ports: [" + any4.port() +
                                            "]\n    - cidr: ::1/128\n      ports: [" + any6.port() + "]\n");
    auto t = sandboxed(open, "$NP tcp4 0.0.0.0 " + any4.port() + "; $NP tcp6 :: " + any6.port());
    EXPECT_EQ(t.lines, (std::vector<std::string>{"ok", "ok"})) << t.result.out;
}

TEST_F(Egress, TcpFastOpenMptcpAndIoUring) {
    TcpListener ok("127.0.0.2"), bad("127.0.0.3");
    UdpReceiver uok("127.0.0.2"), ubad("127.0.0.3");
    auto policy = write_policy("special", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    auto s = sandboxed(policy, "$NP fastopen 127.0.0.3 " + bad.port() + "; $NP mptcp 127.0.0.3 " + bad.port() +
                                   "; $NP uring-connect 127.0.0.3 " + bad.port() + "; $NP uring-sendmsg 127.0.0.3 " + ubad.port() +
                                   "; $NP mptcp 127.0.0.2 " + ok.port() + "; $NP uring-connect 127.0.0.2 " + ok.port() +
                                   "; $NP uring-sendmsg 127.0.0.2 " + uok.port());
    // io_uring is not available in a sandbox at all (seccomp: its IORING_OP_SOCKET would create
    // sockets past the filter), so its allowed connect and send fail too (Bypass.IoUring*).
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM", "EPERM", "EPERM", "ok", "EPERM", "EPERM"})) << s.result.out << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(ubad.received(), 0);
    EXPECT_EQ(uok.received(), 0);
    EXPECT_EQ(ok.accepted(), 1);
}

TEST_F(Egress, StaticBinaryAndGrandchildAreEnforced) {
    TcpListener ok("127.0.0.2"), bad("127.0.0.3");
    auto policy = write_policy("static", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + ok.port() + "]\n");
    auto s = sandboxed(policy, "busybox wget -q -O- http://127.0.0.2:" + ok.port() + "/; echo; "
                               "busybox wget -q -O- http://127.0.0.3:" + bad.port() + "/ 2>&1 | grep -c 'not permitted'; "
                               "$NP fork-tcp4 127.0.0.3 " + bad.port() + "; $NP fork-tcp4 127.0.0.2 " + ok.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"ok", "1", "EPERM", "ok"})) << s.result.out << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_EQ(ok.accepted(), 2);
    bool wget_event = false;
    for (const auto& e : s.audit) wget_event = wget_event || (e["comm"] == "wget" || e["comm"] == "busybox");
    EXPECT_TRUE(wget_event);
}

TEST_F(Egress, RawAndPingSocketsCannotBeCreated) {
    auto policy = write_policy("sockets", "egress:\n  allow:\n    - cidr: 0.0.0.0/0\n");
    auto s = sandboxed(policy, "$NP socket raw; $NP socket udplite; $NP socket ping");
    ASSERT_EQ(s.lines.size(), 3u) << s.result.out;
    EXPECT_EQ(s.lines[0], "EPERM");
    EXPECT_EQ(s.lines[1], "EPERM");
    EXPECT_NE(s.lines[2], "ok");
    bool udplite = false;
    for (const auto& e : s.audit) udplite = udplite || (e["event"] == "socket_denied" && e["socket"]["protocol"] == "udplite");
    EXPECT_TRUE(udplite);
}

// In a network namespace the test makes, where ping sockets are open to every group: the
// control (unsandboxed, as nobody) can create one; the sandbox cannot, and the denial is audited.
TEST_F(Egress, PingSocketDeniedWherePingIsAllowed) {
    NetNs ns("mwping");
    command({"nsenter", "--net=/run/netns/" + ns.name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"});
    // nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup and bpf mounts.
    auto control = command({"nsenter", "--net=/run/netns/" + ns.name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            program("netprobe"), "socket", "ping"});
    EXPECT_EQ(control.out, "ok\n") << control.err;
    std::string audit = state_dir() + "/ping-audit.jsonl";
    auto r = command({"nsenter", "--net=/run/netns/" + ns.name, MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--audit", audit,
                      "--", program("netprobe"), "socket", "ping"});
    EXPECT_EQ(r.out, "EPERM\n") << r.err;
    auto events = read_audit(audit);
    ::unlink(audit.c_str());
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0]["event"], "socket_denied");
    EXPECT_EQ(events[0]["socket"]["protocol"], "icmp");
}

// 169.254.169.254 and a private address, on a dummy interface inside a namespace the test makes:
// nothing can leave the machine even if enforcement failed.
TEST_F(Egress, MetadataAndPrivateAddressesDeniedByDefault) {
    NetNs ns("mwmeta");
    // A veth pair inside the namespace holds the addresses (this kernel has no dummy driver).
    command({"ip", "-n", ns.name, "link", "add", "mw0", "type", "veth", "peer", "name", "mw1"});
    command({"ip", "-n", ns.name, "addr", "add", "169.254.169.254/32", "dev", "mw0"});
    command({"ip", "-n", ns.name, "addr", "add", "10.1.2.3/32", "dev", "mw0"});
    command({"ip", "-n", ns.name, "link", "set", "mw0", "up"});
    command({"ip", "-n", ns.name, "link", "set", "mw1", "up"});
    // Listeners inside the namespace.
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t listener = ::fork();
    if (listener == 0) {
        ::close(ready[0]);
        int nsfd = ::open(("/run/netns/" + ns.name).c_str(), O_RDONLY);
        if (::setns(nsfd, CLONE_NEWNET) != 0) ::_exit(1);
        for (const char* a : {"169.254.169.254", "10.1.2.3"}) {
            int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in s{};
            s.sin_family = AF_INET;
            s.sin_port = htons(8080);
            inet_pton(AF_INET, a, &s.sin_addr);
            if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0 || ::listen(fd, 8) != 0) ::_exit(1);
        }
        (void)!::write(ready[1], "r", 1);
        ::pause();
        ::_exit(0);
    }
    ::close(ready[1]);
    struct Reap {
        pid_t pid;
        ~Reap() {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    } reap{listener};
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "listeners in the namespace failed";
    ::close(ready[0]);
    auto run_in_ns = [&](const std::string& policy) {
        std::string audit = state_dir() + "/meta-audit.jsonl";
        ::unlink(audit.c_str());
        auto r = command({"nsenter", "--net=/run/netns/" + ns.name, MCPWARDEN_BIN, "run", "--state-dir", state_dir(), "--policy", policy,
                          "--audit", audit, "--", "sh", "-c",
                          program("netprobe") + " tcp4 169.254.169.254 8080; " + program("netprobe") + " tcp4 10.1.2.3 8080"});
        auto events = read_audit(audit);
        ::unlink(audit.c_str());
        return std::make_pair(r, events);
    };
    auto [denied, events] = run_in_ns(write_policy("meta", "egress:\n  allow:\n    - cidr: 0.0.0.0/0\n"));
    EXPECT_EQ(denied.out, "EPERM\nEPERM\n") << denied.err;
    ASSERT_EQ(events.size(), 2u);
    EXPECT_NE(events[0]["rule"].get<std::string>().find("169.254.0.0/16"), std::string::npos) << events[0];
    EXPECT_NE(events[1]["rule"].get<std::string>().find("10.0.0.0/8"), std::string::npos) << events[1];
    // The control: allowed explicitly, both connect (so the denial above was the policy's).
    auto [allowed, none] = run_in_ns(write_policy("meta2", "egress:\n  allow:\n    - cidr: 169.254.169.254/32\n    - cidr: 10.1.2.3/32\n"));
    EXPECT_EQ(allowed.out, "ok\nok\n") << allowed.err;
    EXPECT_TRUE(none.empty());
}

TEST_F(Egress, SandboxCannotTouchProgramsMapsOrLinks) {
    TcpListener bad("127.0.0.3");
    auto policy = write_policy("attack", "egress:\n  allow: []\n");
    auto s = sandboxed(policy, "$NP bpf-attack " + mcpwarden::BpfObjects::pin_root() +
                                   "; echo $$ > /sys/fs/cgroup/unified/cgroup.procs 2>/dev/null || echo move-refused; "
                                   "$NP tcp4 127.0.0.3 " + bad.port());
    for (const auto& line : s.lines) EXPECT_EQ(line.find(": ok"), std::string::npos) << line;
    EXPECT_EQ(s.lines.size(), 8u) << s.result.out;
    EXPECT_NE(s.result.out.find("move-refused"), std::string::npos);
    EXPECT_EQ(s.lines.back(), "EPERM");
    EXPECT_EQ(bad.accepted(), 0);
}

TEST_F(Egress, ConcurrentSandboxesSeeOnlyTheirOwnRules) {
    TcpListener a("127.0.0.2"), b("127.0.0.4");
    auto pa = write_policy("conc-a", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n");
    auto pb = write_policy("conc-b", "egress:\n  allow:\n    - cidr: 127.0.0.4/32\n");
    std::string script = "sleep 0.5; $NP tcp4 127.0.0.2 " + a.port() + "; $NP tcp4 127.0.0.4 " + b.port();
    Sandboxed ra, rb;
    std::thread t([&] { ra = sandboxed(pa, script); });
    std::this_thread::sleep_for(100ms);
    std::string audit = state_dir() + "/conc-b.jsonl";
    auto r = warden({"run", "--policy", pb, "--audit", audit, "--env", "NP=" + program("netprobe"), "--", "sh", "-c", script});
    ::unlink(audit.c_str());
    t.join();
    EXPECT_EQ(ra.lines, (std::vector<std::string>{"ok", "EPERM"})) << ra.result.err;
    EXPECT_EQ(r.out, "EPERM\nok\n") << r.err;
}

TEST_F(Egress, AuditOnlyLogsButAllows) {
    TcpListener l("127.0.0.3");
    auto policy = write_policy("audit", "egress:\n  allow: []\n");
    auto s = sandboxed(policy, "$NP tcp4 127.0.0.3 " + l.port(), {"--audit-only"});
    EXPECT_EQ(s.lines, std::vector<std::string>{"ok"}) << s.result.err;
    EXPECT_EQ(l.accepted(), 1);
    ASSERT_EQ(s.audit.size(), 1u);
    EXPECT_EQ(s.audit[0]["verdict"], "allowed_audit_only");
    EXPECT_EQ(s.result.report["egress_audited"], 1);
    EXPECT_EQ(s.result.report["egress_denied"], 0);
    EXPECT_NE(s.result.err.find("AUDIT-ONLY"), std::string::npos);
}

TEST_F(Egress, NoPolicyMeansNoEgress) {
    TcpListener l("127.0.0.2");
    auto r = warden({"run", "--", program("netprobe"), "tcp4", "127.0.0.2", l.port()});
    EXPECT_EQ(r.out, "EPERM\n");
    EXPECT_EQ(l.accepted(), 0);
    EXPECT_EQ(r.report["egress_denied"], 1);
}

// A parent cgroup holding a program attached without multi-attach (as systemd does for
// IPAddressDeny= on units without Delegate=yes) makes our attach fail: run must refuse.
TEST_F(Egress, AttachFailureRefusesToRun) {
    std::string root = "/sys/fs/cgroup/unified/mwtest-nomulti-" + std::to_string(::getpid());
    auto layout = mcpwarden::CgroupLayout::detect();
    root = layout.unified_mount + "/mwtest-nomulti-" + std::to_string(::getpid());
    ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
    auto objs = mcpwarden::BpfObjects::open();
    int cg = ::open(root.c_str(), O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(bpf_prog_attach(objs->prog("connect4"), cg, BPF_CGROUP_INET4_CONNECT, 0), 0);
    std::string marker = state_dir() + "/nomulti-ran";
    auto r = warden({"run", "--cgroup-root", root.substr(layout.unified_mount.size()), "--", "touch", marker});
    EXPECT_EQ(r.exit_code, 125) << r.err;
    EXPECT_NE(r.err.find("cannot attach"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("Refusing"), std::string::npos) << r.err;
    EXPECT_NE(::access(marker.c_str(), F_OK), 0);
    bpf_prog_detach2(objs->prog("connect4"), cg, BPF_CGROUP_INET4_CONNECT);
    ::close(cg);
    ::rmdir((root + "/mcpwarden").c_str());
    EXPECT_EQ(::rmdir(root.c_str()), 0);
}

// mcpwarden killed with SIGKILL: a surviving daemon of the sandbox stays confined (pinned
// links), and the next run sweeps its cgroup, pins, rules and workspace.
TEST_F(Egress, EnforcementSurvivesACrashAndIsSweptAfter) {
    TcpListener l("127.0.0.2");
    // The daemon's result goes to the sandbox's cache, the host's directory (its /tmp is its own).
    std::string name = "mw-crash-" + std::to_string(::getpid());
    auto policy = write_policy("crash", "egress:\n  allow: []\n");
    std::string script = "setsid sh -c 'sleep 1; " + program("netprobe") + " tcp4 127.0.0.2 " + l.port() +
                         " > $XDG_CACHE_HOME/" + name + "' & sleep 300";
    ASSERT_TRUE(crash_run(policy, script));
    std::string out = sandbox_cache_dir("crash") + "/" + name;
    // The daemon outlives mcpwarden and tries to connect.
    std::string result;  // read until the whole line is there (the shell may still be writing it)
    for (int i = 0; i < 300 && (result.empty() || result.back() != '\n'); ++i) {
        std::this_thread::sleep_for(10ms);
        result.clear();
        mcpwarden::read_file(out, result);
    }
    // The daemon ended with its sandbox (its init ends the PID namespace when mcpwarden dies), or
    // it lives on confined: never connected.
    EXPECT_TRUE(result.empty() || result == "EPERM\n") << result;
    EXPECT_EQ(l.accepted(), 0);
    EXPECT_FALSE(leftover_cgroups().empty());
    // The crashed sandbox's policy id, from its pin directory.
    std::uint64_t crashed_id = 0;
    for (auto* d = ::opendir(mcpwarden::sandbox_pin_root().c_str()); d;) {
        auto* e = ::readdir(d);
        if (!e) {
            ::closedir(d);
            break;
        }
        if (e->d_name[0] == '.') continue;
        DIR* inner = ::opendir((mcpwarden::sandbox_pin_root() + "/" + e->d_name).c_str());
        while (auto* f = inner ? ::readdir(inner) : nullptr) {
            if (std::string(f->d_name).rfind("policy-", 0) == 0) crashed_id = std::stoull(f->d_name + 7);
        }
        if (inner) ::closedir(inner);
    }
    ASSERT_NE(crashed_id, 0u);
    EXPECT_GT(entries_of(crashed_id), 0);
    // The next run sweeps everything of the crashed one.
    auto r = warden({"run", "--", "true"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(leftover_processes().empty());
    EXPECT_TRUE(leftover_cgroups().empty());
    EXPECT_EQ(directory_entries(mcpwarden::sandbox_pin_root()), 0) << "pinned links of the crashed sandbox remain";
    EXPECT_EQ(directory_entries(state_dir() + "/sandbox"), 0) << "the crashed run's workspace reached the disk";
    EXPECT_EQ(entries_of(crashed_id), 0) << "rules of the crashed sandbox remain in the maps";
    ::unlink(out.c_str());
}
