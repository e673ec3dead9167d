// SPDX-License-Identifier: Apache-2.0
// The bypass suite (docs/security.md): one test per way a sandboxed server could try to get
// around its egress policy. Each asserts that the attempt fails and, where the kernel's hooks
// see it, that an audit event names it. Each records what it tried ("attempt") and what the
// sandbox saw ("outcome"); scripts/security-table.sh turns the gtest XML of the host and VM
// runs into the table in docs/security.md.
//
// Destinations other than loopback exist only inside a network namespace the test makes.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "confinement.h"
#include "enforcer.h"
#include "bypass_common.h"
#include "sandbox_cache.h"

using namespace harness;
using namespace netfix;
using namespace bypass;
using namespace std::chrono_literals;


// An allow-all policy that also allows new user namespaces (refused by default): the attempts
// made as root of a user namespace keep their meaning.
static std::string userns_policy() {
    return write_policy("bypass-open-userns",
                        "allow_user_namespaces: true\negress:\n  allow:\n    - cidr: 0.0.0.0/0\n    - cidr: ::/0\n");
}

// ---- address families and special destinations -------------------------------------------

TEST_F(Bypass, Ipv4MappedIpv6Tcp) {
    attempt("TCP connect to a denied IPv4 address written as IPv4-mapped IPv6 (::ffff:127.0.0.7) on an AF_INET6 socket");
    TcpListener bad("127.0.0.7"), ok("127.0.0.2");
    auto s = sandboxed(lo_policy(), "$NP tcp6 ::ffff:127.0.0.7 " + bad.port() + "; $NP tcp6 ::ffff:127.0.0.2 " + ok.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "ok"})) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port()), "connect6"));
    outcome(s.lines[0] + " (audited as 127.0.0.7, connect6); the allowed address, mapped, connects");
}

TEST_F(Bypass, Ipv4MappedIpv6Udp) {
    attempt("UDP sendto a denied IPv4 address as ::ffff:127.0.0.7 from an AF_INET6 socket");
    UdpReceiver bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP udp-sendto 6 ::ffff:127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(bad.received(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port())));
    outcome(join(s.lines) + ", nothing delivered (audited)");
}

TEST_F(Bypass, Ipv6UdpSocketWithPlainSockaddrIn) {
    attempt("AF_INET6 UDP socket sending to a plain sockaddr_in (IPv4) destination");
    UdpReceiver bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP udp6-sin 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(bad.received(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port())));
    outcome(join(s.lines) + ", nothing delivered (audited)");
}

TEST_F(Bypass, Sendmmsg) {
    attempt("sendmmsg() batching a denied destination between two allowed ones");
    UdpReceiver ok("127.0.0.2"), bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP udp-sendmmsg 127.0.0.2 " + ok.port() + " 127.0.0.7 " + bad.port() + " 127.0.0.2 " + ok.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"sent 1"}) << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(bad.received(), 0);
    EXPECT_EQ(ok.received(), 1);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port()), "sendmsg4"));
    outcome("the batch stops at the denied message (" + join(s.lines) + "), nothing delivered to it (audited)");
}

TEST_F(Bypass, ConnectedUdpResendToNewAddress) {
    attempt("UDP socket connected to an allowed address, then sendto() a denied one");
    UdpReceiver ok("127.0.0.2"), bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP udp-connect-resend 127.0.0.2 " + ok.port() + " 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(ok.received(), 1);
    EXPECT_EQ(bad.received(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port()), "sendmsg4"));
    outcome(join(s.lines) + " on the re-send (audited); the connected send arrives");
}

TEST_F(Bypass, TcpFastOpen) {
    attempt("TCP Fast Open: sendto(MSG_FASTOPEN) opens a connection without connect()");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP fastopen 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port()), "connect4"));
    outcome(join(s.lines) + " (audited, connect4)");
}

TEST_F(Bypass, Mptcp) {
    attempt("MPTCP (IPPROTO_MPTCP) connect to a denied address");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP mptcp 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port())));
    outcome(join(s.lines) + " (audited)");
}

TEST_F(Bypass, IoUringConnect) {
    attempt("io_uring IORING_OP_CONNECT to a denied address");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP uring-connect 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    outcome(join(s.lines) + " from io_uring_setup (seccomp; the connect4 hook would deny the connect as well)");
}

TEST_F(Bypass, IoUringSendmsg) {
    attempt("io_uring IORING_OP_SENDMSG of a UDP datagram to a denied address");
    UdpReceiver bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP uring-sendmsg 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(bad.received(), 0);
    outcome(join(s.lines) + " from io_uring_setup (seccomp)");
}

TEST_F(Bypass, IoUringSocket) {
    attempt("io_uring IORING_OP_SOCKET creating an AF_PACKET socket (io_uring is not subject to seccomp)");
    auto s = sandboxed(lo_policy(), "$NP uring-socket packet; $NP uring-socket netlink-diag");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    outcome(join(s.lines) + " from io_uring_setup (seccomp)");
}

TEST_F(Bypass, UnspecifiedIpv4Address) {
    attempt("connect to 0.0.0.0 (the kernel connects to this host) under an allow-all IPv4 policy");
    TcpListener any("0.0.0.0");
    auto s = sandboxed(open_policy(), "$NP tcp4 0.0.0.0 " + any.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(any.accepted(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.1", std::stoi(any.port())) || has_event(s.audit, "0.0.0.0", std::stoi(any.port())));
    outcome(join(s.lines) + " (audited as loopback)");
}

TEST_F(Bypass, UnspecifiedIpv6Address) {
    attempt("connect to :: (the kernel connects to ::1) under an allow-all policy");
    TcpListener any("::", AF_INET6);
    auto s = sandboxed(open_policy(), "$NP tcp6 :: " + any.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(any.accepted(), 0);
    EXPECT_FALSE(s.audit.empty());
    outcome(join(s.lines) + " (audited)");
}

TEST_F(Bypass, MappedUnspecifiedAddress) {
    attempt("connect to ::ffff:0.0.0.0 (v4-mapped 0.0.0.0) under an allow-all policy");
    TcpListener any("0.0.0.0");
    auto s = sandboxed(open_policy(), "$NP tcp6 ::ffff:0.0.0.0 " + any.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(any.accepted(), 0);
    EXPECT_FALSE(s.audit.empty());
    outcome(join(s.lines) + " (audited)");
}

TEST_F(Bypass, LoopbackRange) {
    attempt("connect to 127.0.0.1 and 127.9.9.9 (host services) under an allow-all policy");
    TcpListener one("127.0.0.1"), other("127.9.9.9");
    auto s = sandboxed(open_policy(), "$NP tcp4 127.0.0.1 " + one.port() + "; $NP tcp4 127.9.9.9 " + other.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    EXPECT_EQ(one.accepted() + other.accepted(), 0);
    ASSERT_EQ(s.audit.size(), 2u);
    EXPECT_NE(s.audit[0]["rule"].get<std::string>().find("127.0.0.0/8"), std::string::npos) << s.audit[0];
    outcome(join(s.lines) + " (audited: reserved range 127.0.0.0/8)");
}

TEST_F(Bypass, CloudMetadataAddress) {
    attempt("TCP to 169.254.169.254:80 and UDP to :123 (cloud metadata) under an allow-all policy, in a test namespace");
    OutsideNet net;
    auto s = sandboxed(open_policy(), "$NP tcp4 169.254.169.254 80; $NP udp-sendto 4 169.254.169.254 123", {}, net.ns.enter());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    ASSERT_FALSE(s.audit.empty());
    EXPECT_NE(s.audit[0]["rule"].get<std::string>().find("169.254.0.0/16"), std::string::npos) << s.audit[0];
    outcome(join(s.lines) + " (audited: reserved range 169.254.0.0/16)");
}

TEST_F(Bypass, Multicast) {
    attempt("UDP to multicast groups 224.0.0.251:5353 and 239.1.2.3 under an allow-all policy, in a test namespace");
    OutsideNet net;
    auto s = sandboxed(open_policy(), "$NP udp-sendto 4 224.0.0.251 5353; $NP udp-sendto 4 239.1.2.3 5000", {}, net.ns.enter());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    EXPECT_TRUE(has_event(s.audit, "224.0.0.251", 5353));
    EXPECT_TRUE(has_event(s.audit, "239.1.2.3", 5000));
    outcome(join(s.lines) + " (audited)");
}

TEST_F(Bypass, Broadcast) {
    attempt("UDP with SO_BROADCAST to 255.255.255.255 and the subnet broadcast 10.1.2.255, in a test namespace");
    OutsideNet net;
    auto s = sandboxed(open_policy(), "$NP udp-broadcast 255.255.255.255 9999; $NP udp-broadcast 10.1.2.255 9999", {}, net.ns.enter());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    EXPECT_TRUE(has_event(s.audit, "255.255.255.255", 9999));
    outcome(join(s.lines) + " (audited)");
}

// ---- socket kinds the address hooks never see ---------------------------------------------

TEST_F(Bypass, PingSocket) {
    attempt("ICMP echo through an unprivileged ping socket where ping_group_range allows every group");
    OutsideNet net;
    command({"nsenter", "--net=/run/netns/" + net.ns.name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"});
    auto control = command({"nsenter", "--net=/run/netns/" + net.ns.name, "setpriv", "--reuid=65534", "--regid=65534",
                            "--clear-groups", program("netprobe"), "socket", "ping"});
    EXPECT_EQ(control.out, "ok\n") << "control: nobody outside a sandbox can " << control.err;
    auto s = sandboxed(open_policy(), "$NP socket ping; $NP socket ping6", {}, net.ns.enter());
    ASSERT_EQ(s.lines.size(), 2u) << s.result.err;
    EXPECT_EQ(s.lines[0], "EPERM");
    EXPECT_NE(s.lines[1], "ok");
    bool audited = false;
    for (const auto& e : s.audit) audited = audited || (e["event"] == "socket_denied" && e["socket"]["protocol"] == "icmp");
    EXPECT_TRUE(audited);
    outcome(join(s.lines) + " from socket() (sock_create hook, audited); nobody outside a sandbox: ok");
}

TEST_F(Bypass, RawSocket) {
    attempt("raw IP socket, also as root of its own user namespace (unshare -rn), where CAP_NET_RAW is held");
    auto s = sandboxed(userns_policy(), "$NP socket raw; unshare -rn $NP socket raw || echo unshare-failed");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    bool audited = false;
    for (const auto& e : s.audit) audited = audited || e["event"] == "socket_denied";
    EXPECT_TRUE(audited);
    outcome(join(s.lines) + " (in the user namespace: sock_create hook, audited)");
}

TEST_F(Bypass, SctpSocket) {
    attempt("SCTP socket (its one-to-many sendmsg takes no UDP path)");
    auto s = sandboxed(open_policy(), "$NP socket sctp");
    ASSERT_EQ(s.lines.size(), 1u) << s.result.err;
    EXPECT_NE(s.lines[0], "ok");
    outcome(s.lines[0] == "EPROTONOSUPPORT" ? "EPROTONOSUPPORT (no SCTP in this kernel; where there is, sock_create refuses it)"
                                            : join(s.lines) + " (sock_create)");
}

TEST_F(Bypass, PacketSocket) {
    attempt("AF_PACKET socket, also as root of its own user namespace (unshare -rn), where CAP_NET_RAW is held");
    auto control = as_nobody({"unshare", "-rn", program("netprobe"), "socket", "packet"});
    auto s = sandboxed(userns_policy(), "$NP socket packet; unshare -rn $NP socket packet || echo unshare-failed");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    outcome(join(s.lines) + " (seccomp); nobody outside a sandbox, in a user namespace: " +
            (control.out.empty() ? control.err : split_lines(control.out)[0]));
}

TEST_F(Bypass, VsockSocket) {
    attempt("AF_VSOCK socket (a path to the hypervisor); created only, never connected");
    auto s = sandboxed(open_policy(), "$NP socket vsock");
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    outcome(join(s.lines) + " (seccomp)");
}

TEST_F(Bypass, NetlinkSocket) {
    attempt("AF_NETLINK sockets: sock_diag (lists every socket of the host) and kobject_uevent");
    auto control = as_nobody({program("netprobe"), "socket", "netlink-diag"});
    EXPECT_EQ(control.out, "ok\n") << control.err;
    auto s = sandboxed(open_policy(), "$NP socket netlink-diag; $NP socket netlink-uevent; $NP socket netlink");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM", "ok"})) << s.result.err;
    outcome(s.lines[0] + ", " + s.lines[1] + " (seccomp); NETLINK_ROUTE stays allowed (getifaddrs; read-only without CAP_NET_ADMIN)");
}

TEST_F(Bypass, I386SyscallEntry) {
    attempt("socket(AF_PACKET) through the 32-bit entry (int 0x80 socketcall), past a 64-bit-only filter");
    auto s = sandboxed(open_policy(), "$NP int80-socket; echo status $?");
    std::string out = join(s.lines);
    EXPECT_EQ(out.find("ok"), std::string::npos) << out;
    EXPECT_TRUE(out == "status 159" || out.find("ENOSYS") != std::string::npos) << out;
    outcome(out == "status 159" ? "killed by SIGSYS (seccomp: foreign ABI)" : out);
}

// ---- Unix sockets and sockets from elsewhere --------------------------------------------

TEST_F(Bypass, UnixSocketsOfHostDaemons) {
    attempt("AF_UNIX connect to host daemons under /run (D-Bus, systemd-resolved, nscd, docker, and a world-writable test socket)");
    std::string own = "/run/mcpwarden-bypass-" + std::to_string(::getpid()) + ".sock";
    int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", own.c_str());
    ::unlink(own.c_str());
    ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(l, 8), 0);
    ::chmod(own.c_str(), 0666);
    struct Cleanup {
        int fd;
        std::string path;
        ~Cleanup() {
            ::close(fd);
            ::unlink(path.c_str());
        }
    } cleanup{l, own};
    auto control = as_nobody({program("netprobe"), "unix-connect", own});
    EXPECT_EQ(control.out, "ok\n") << "control: nobody outside a sandbox connects " << control.err;
    std::vector<std::string> paths{own};
    for (const char* p : {"/run/dbus/system_bus_socket", "/run/systemd/resolve/io.systemd.Resolve", "/run/systemd/private",
                          "/run/nscd/socket", "/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock"}) {
        struct stat st {};
        if (::stat(p, &st) == 0 && S_ISSOCK(st.st_mode)) paths.push_back(p);
    }
    std::string script;
    for (const auto& p : paths) script += "$NP unix-connect " + p + "; ";
    auto s = sandboxed(lo_policy(), script);
    ASSERT_EQ(s.lines.size(), paths.size()) << s.result.out << s.result.err;
    for (const auto& line : s.lines) EXPECT_EQ(line, "ENOENT");
    outcome(join(s.lines) + " for " + std::to_string(paths.size()) + " socket(s): /run is an empty tmpfs in the sandbox's mount namespace");
}

TEST_F(Bypass, AbstractUnixSocketOfTheHost) {
    attempt("AF_UNIX connect to an abstract socket of a host process (@name: no file, shared network namespace)");
    std::string name = "mcpwarden-bypass-" + std::to_string(::getpid());
    int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::listen(l, 8), 0);
    auto control = as_nobody({program("netprobe"), "unix-connect", "@" + name});
    EXPECT_EQ(control.out, "ok\n") << "control: nobody outside a sandbox connects " << control.err;
    auto s = sandboxed(lo_policy(), "$NP unix-connect @" + name);
    ::close(l);
    if (mcpwarden::landlock_abi() >= 6) {
        EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
        outcome(join(s.lines) + " (Landlock scopes abstract Unix sockets to the sandbox)");
    } else {
        // No kernel mechanism before Linux 6.12: the documented gap (docs/security.md).
        EXPECT_EQ(s.lines, std::vector<std::string>{"ok"}) << s.result.err;
        RecordProperty("verdict", "open");
        outcome("connects: Linux < 6.12 has no Landlock scoping of abstract sockets; run no host daemon on an "
                "abstract socket where untrusted servers run, or use Linux 6.12+");
    }
}

TEST_F(Bypass, InheritedSocket) {
    attempt("use a TCP socket the parent of mcpwarden left open (created outside the sandbox cgroup)");
    TcpListener bad("127.0.0.7");
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);  // no CLOEXEC: inherited by mcpwarden
    ASSERT_GE(fd, 3);
    auto s = sandboxed(lo_policy(), "$NP use-fd " + std::to_string(fd) + " 127.0.0.7 " + bad.port());
    ::close(fd);
    EXPECT_EQ(s.lines, std::vector<std::string>{"EBADF"}) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    outcome(join(s.lines) + ": every inherited fd but 0/1/2 is closed; a socket as stdio is relayed through pipes");
}

namespace {

// Sandboxes share no path (each sees only its own cache, /tmp, /dev/shm): the test stands
// between two of them, as any program talking to both could, taking the socket a giver passes
// in its cache and handing it on in the taker's.
struct ScmMessage {
    char byte = 'f';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    ScmMessage() {
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
    }
};

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    return a;
}

// The descriptor `netprobe fd-give` at `path` passes; `conn` holds the connection (the giver
// lingers while it is open).
mcpwarden::UniqueFd take_fd(const std::string& path, mcpwarden::UniqueFd& conn) {
    conn.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto a = unix_address(path);
    if (::connect(conn.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
    ScmMessage m;
    if (::recvmsg(conn.get(), &m.msg, MSG_CMSG_CLOEXEC) != 1) return {};
    cmsghdr* cm = CMSG_FIRSTHDR(&m.msg);
    if (!cm || cm->cmsg_type != SCM_RIGHTS) return {};
    int fd;
    std::memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return mcpwarden::UniqueFd(fd);
}

// Passes `fd` to the first connection to a socket it listens on at `path`.
class HandOver {
public:
    HandOver(const std::string& path, int fd) : path_(path) {
        listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        auto a = unix_address(path);
        ::unlink(path.c_str());
        ok_ = ::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && ::listen(listener_.get(), 1) == 0;
        ::chmod(path.c_str(), 0777);
        if (!ok_) return;
        thread_ = std::thread([this, fd] {
            mcpwarden::UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            ScmMessage m;
            cmsghdr* cm = CMSG_FIRSTHDR(&m.msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
            if (c) ::sendmsg(c.get(), &m.msg, MSG_NOSIGNAL);
        });
    }
    ~HandOver() {
        if (thread_.joinable()) thread_.join();
        ::unlink(path_.c_str());
    }
    bool ok() const { return ok_; }

private:
    std::string path_;
    mcpwarden::UniqueFd listener_;
    bool ok_ = false;
    std::thread thread_;
};

// The caches of the two policies' sandboxes (made by a first run of each).
std::pair<std::string, std::string> giver_and_taker_caches(const std::string& giver_policy, const std::string& taker_policy) {
    for (const auto& p : {giver_policy, taker_policy}) warden({"run", "--policy", p, "--", "true"});
    return {sandbox_cache_dir("bypass-giver"), sandbox_cache_dir("bypass-taker")};
}

}  // namespace

TEST_F(Bypass, SocketReceivedOverScmRights) {
    attempt("receive over SCM_RIGHTS a TCP socket created in another sandbox, connect it where this sandbox may go");
    TcpListener ok("127.0.0.2");
    auto giver_policy = write_policy("bypass-giver", "egress:\n  allow: []\n");
    auto taker_policy = write_policy("bypass-taker", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + ok.port() + "]\n");
    auto [giver_cache, taker_cache] = giver_and_taker_caches(giver_policy, taker_policy);
    ASSERT_FALSE(giver_cache.empty() || taker_cache.empty());
    std::string path = giver_cache + "/give.sock";
    std::string giver_audit = state_dir() + "/giver-audit.jsonl";
    ::unlink(giver_audit.c_str());
    Result giver;
    std::thread t([&] {
        giver = warden({"run", "--policy", giver_policy, "--audit", giver_audit, "--", program("netprobe"), "fd-give", path});
    });
    for (int i = 0; i < 3000 && ::access(path.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);  // 30 s: a loaded, sanitized or emulated start
    mcpwarden::UniqueFd to_giver;
    auto socket = take_fd(path, to_giver);
    EXPECT_TRUE(socket) << "the giver's socket did not arrive";
    Sandboxed s;
    {
        HandOver hand(taker_cache + "/take.sock", socket.get());
        EXPECT_TRUE(hand.ok());
        s = sandboxed(taker_policy, "$NP fd-take " + taker_cache + "/take.sock 127.0.0.2 " + ok.port() + "; $NP tcp4 127.0.0.2 " + ok.port());
    }
    socket.reset();
    to_giver.reset();  // the giver ends
    t.join();
    EXPECT_EQ(giver.out, "ready\nok\n") << giver.err;
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "ok"})) << s.result.err;
    EXPECT_EQ(ok.accepted(), 1);  // the taker's own socket only
    auto events = read_audit(giver_audit);
    ::unlink(giver_audit.c_str());
    EXPECT_TRUE(has_event(events, "127.0.0.2", std::stoi(ok.port())));
    outcome(s.lines[0] + ": a socket keeps the policy of the cgroup it was created in (audited in the giver's sandbox)");
}

TEST_F(Bypass, SocketOfAnEndedSandbox) {
    attempt("receive over SCM_RIGHTS a TCP socket created in another sandbox, connect it after that sandbox ended");
    TcpListener ok("127.0.0.2");
    auto giver_policy = write_policy("bypass-giver", "egress:\n  allow: []\n");
    auto taker_policy = write_policy("bypass-taker", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n      ports: [" + ok.port() + "]\n");
    auto [giver_cache, taker_cache] = giver_and_taker_caches(giver_policy, taker_policy);
    ASSERT_FALSE(giver_cache.empty() || taker_cache.empty());
    std::string path = giver_cache + "/give.sock", go = taker_cache + "/go";
    ::unlink(go.c_str());
    Result giver;
    std::thread t([&] { giver = warden({"run", "--policy", giver_policy, "--", program("netprobe"), "fd-give-and-go", path}); });
    for (int i = 0; i < 3000 && ::access(path.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);  // 30 s: a loaded, sanitized or emulated start
    mcpwarden::UniqueFd to_giver;
    auto socket = take_fd(path, to_giver);
    EXPECT_TRUE(socket) << "the giver's socket did not arrive";
    Sandboxed s;
    {
        HandOver hand(taker_cache + "/take.sock", socket.get());
        EXPECT_TRUE(hand.ok());
        std::thread taker([&] {
            s = sandboxed(taker_policy, "$NP fd-take-after " + taker_cache + "/take.sock " + go + " 127.0.0.2 " + ok.port() +
                                            "; $NP tcp4 127.0.0.2 " + ok.port());
        });
        t.join();  // the giver's sandbox is gone: its process, its cgroup, its links
        EXPECT_EQ(giver.out, "ready\nok\n") << giver.err;
        std::ofstream(go) << "go\n";
        taker.join();
    }
    socket.reset();
    ::unlink(go.c_str());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "ok"})) << s.result.err;
    EXPECT_EQ(ok.accepted(), 1);  // the taker's own socket only
    outcome(s.lines[0] + ": the sandbox's backstop programs stay with its cgroup while a socket made in it lives, "
                         "and deny it once the sandbox ended");
}

// ---- the sandbox against its own enforcement ----------------------------------------------

TEST_F(Bypass, MoveToAnotherCgroupV2) {
    attempt("write its pid into the cgroup v2 root's and its parent's cgroup.procs, then connect");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP cgroup-move v2; $NP tcp4 127.0.0.7 " + bad.port());
    ASSERT_EQ(s.lines.size(), 2u) << s.result.out << s.result.err;
    EXPECT_EQ(s.lines[0].rfind("refused ", 0), 0u) << s.lines[0];
    EXPECT_NE(s.lines[0], "refused 0");
    EXPECT_EQ(s.lines[1], "EPERM");
    EXPECT_EQ(bad.accepted(), 0);
    outcome(join(s.lines) + " (cgroup files are root's)");
}

TEST_F(Bypass, MoveToAnotherCgroupV1) {
    attempt("write its pid into the cgroup v1 hierarchies' root and parent cgroup.procs (memory, pids, ...)");
    auto s = sandboxed(lo_policy(), "$NP cgroup-move v1");
    ASSERT_EQ(s.lines.size(), 1u) << s.result.out << s.result.err;
    EXPECT_TRUE(s.lines[0] == "no hierarchy" || (s.lines[0].rfind("refused ", 0) == 0 && s.lines[0] != "refused 0")) << s.lines[0];
    outcome(s.lines[0] == "no hierarchy" ? "no v1 hierarchy on this host" : s.lines[0]);
}

TEST_F(Bypass, AttachOwnBpfProgram) {
    attempt("load an allow-all cgroup connect4 program and attach it with BPF_F_ALLOW_OVERRIDE");
    auto s = sandboxed(lo_policy(), "$NP bpf-load-attach");
    EXPECT_EQ(s.lines, std::vector<std::string>{"prog_load: EPERM"}) << s.result.err;
    outcome(join(s.lines));
}

TEST_F(Bypass, PolicyMapsAndPins) {
    attempt("open the pinned programs, maps and links, or any BPF object by id; detach; unlink the pins");
    std::string pins = mcpwarden::BpfObjects::pin_root();
    auto held = mcpwarden::BpfObjects::open();  // the pins stay while the test holds them
    auto s = sandboxed(lo_policy(), "$NP bpf-attack " + pins + "; rm -rf " + pins + " 2>/dev/null || echo rm-refused; ls " +
                                        mcpwarden::sandbox_pin_root() + " >/dev/null 2>&1 || echo list-refused");
    ASSERT_GE(s.lines.size(), 7u) << s.result.out;
    for (const auto& line : s.lines) EXPECT_EQ(line.find(": ok"), std::string::npos) << line;
    EXPECT_NE(s.result.out.find("rm-refused"), std::string::npos);
    EXPECT_TRUE(std::filesystem::exists(pins + "/prog_connect4"));
    outcome(join(s.lines));
}

TEST_F(Bypass, NewUserAndNetworkNamespace) {
    attempt("unshare -rn: a new user and network namespace, lo up, connect to its own listener");
    auto control = as_nobody({"unshare", "-rn", program("netprobe"), "netns-loopback", "8080"});
    EXPECT_EQ(control.out, "ok\n") << "control: " << control.err;
    // User namespaces are refused by default (Bypass.NewUserNamespace); allowed here, the
    // attempt keeps its meaning: the egress hooks still decide inside the namespace.
    auto s = sandboxed(write_policy("bypass-lo-userns", "allow_user_namespaces: true\negress:\n  allow:\n    - cidr: 127.0.0.2/32\n"),
                       "unshare -rn $NP netns-loopback 8080 || echo unshare-failed");
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_TRUE(has_event(s.audit, "127.0.0.1", 8080, "connect4"));
    outcome(join(s.lines) + ": the cgroup hooks follow the socket into any namespace (audited)");
}

TEST_F(Bypass, PtraceAnotherProcessOfTheSameUser) {
    attempt("ptrace / pidfd_getfd a process of the sandbox's user outside the sandbox (to connect through it)");
    pid_t victim = ::fork();
    if (victim == 0) {
        ::execlp("setpriv", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30", nullptr);
        ::_exit(127);
    }
    struct Reap {
        pid_t pid;
        ~Reap() {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    } reap{victim};
    std::this_thread::sleep_for(200ms);  // setpriv has exec'd sleep
    // The control: without Yama's ptrace restrictions, nobody outside a sandbox succeeds.
    bool control_ran = !std::filesystem::exists("/proc/sys/kernel/yama");
    if (control_ran) {
        auto control = as_nobody({program("netprobe"), "ptrace", std::to_string(victim)});
        EXPECT_EQ(control.out, "ptrace: ok\npidfd_getfd: ok\n") << "control: " << control.err;
    }
    auto s = sandboxed(lo_policy(), "$NP ptrace " + std::to_string(victim));
    // ptrace is refused by the seccomp filter; the process is not even there for pidfd_open in the
    // sandbox's PID namespace (pidfd_getfd itself is refused by the filter too).
    EXPECT_EQ(s.lines, (std::vector<std::string>{"ptrace: EPERM", "pidfd_getfd: ESRCH"})) << s.result.err;
    outcome(join(s.lines) + " (seccomp; the PID namespace)" + (control_ran ? "; nobody outside a sandbox: ok" : ""));
}

// ---- DNS --------------------------------------------------------------------------------

namespace {

// mcpwarden's upstream for the test (127.0.0.153:5353) and a stand-in for a public resolver
// (127.0.0.154:53) that would answer any name with 127.0.0.99.
struct Resolvers {
    DnsStub upstream{"127.0.0.153", 5353, 60, {"allowed.test=127.0.0.2", "other.test=127.0.0.3"}};
    DnsStub stand_in{"127.0.0.154", 53, 60, {"*=127.0.0.99"}};
};

std::string dns_policy(const std::string& extra_allow = "") {
    return write_policy("bypass-dns", "egress:\n  allow:\n    - host: allowed.test\n" + extra_allow +
                                          "dns:\n  upstream: [\"127.0.0.153:5353\"]\n  allow_reserved_answers: true\n");
}

}  // namespace

TEST_F(Bypass, DnsToAnotherResolverOverUdp) {
    attempt("DNS over UDP straight to another resolver (127.0.0.154:53), for a denied and an allowed name (static busybox nslookup)");
    Resolvers r;
    auto s = sandboxed(dns_policy(), "busybox nslookup other.test 127.0.0.154 >/dev/null 2>&1 && echo answered || echo refused; "
                                     "busybox nslookup allowed.test 127.0.0.154 2>&1 | grep -A1 '^Name' | tail -1");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"refused", "Address: 127.0.0.2"})) << s.result.err;
    EXPECT_EQ(s.result.out.find("127.0.0.99"), std::string::npos);
    bool refused = false;
    for (const auto& e : s.audit) refused = refused || (e["event"] == "dns_refused" && e["name"] == "other.test");
    EXPECT_TRUE(refused);
    outcome("answered by mcpwarden, not the resolver asked: " + join(s.lines) + " (audited: dns_refused)");
}

TEST_F(Bypass, DnsToAnotherResolverOverTcp) {
    attempt("DNS over TCP straight to another resolver (127.0.0.154:53)");
    Resolvers r;
    auto s = sandboxed(dns_policy(), "$NP dns-tcp 127.0.0.154 other.test; $NP dns-tcp 127.0.0.154 allowed.test");
    EXPECT_EQ(s.lines, (std::vector<std::string>{"rcode 5", "127.0.0.2"})) << s.result.err;
    outcome("answered by mcpwarden: " + join(s.lines));
}

TEST_F(Bypass, DnsOverTls) {
    attempt("DNS over TLS: TCP to port 853 of a resolver whose address the policy allows");
    TcpListener dot("127.0.0.154", AF_INET, 853), other("127.0.0.154");
    auto p = write_policy("bypass-dot", "egress:\n  allow:\n    - cidr: 127.0.0.154/32\n");
    auto s = sandboxed(p, "$NP tcp4 127.0.0.154 853; $NP tcp4 127.0.0.154 " + other.port());
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "ok"})) << s.result.err;
    EXPECT_EQ(dot.accepted(), 0);
    bool audited = false;
    for (const auto& e : s.audit) audited = audited || (e.value("port", 0) == 853 && e["rule"].get<std::string>().find("DNS over TLS") != std::string::npos);
    EXPECT_TRUE(audited);
    outcome(s.lines[0] + " (audited: DNS over TLS is denied); another port of the same address connects");
}

TEST_F(Bypass, NameThePolicyDoesNotAllow) {
    attempt("resolve a name the policy does not allow, then connect to its address directly");
    Resolvers r;
    TcpListener other("127.0.0.3");
    auto s = sandboxed(dns_policy(), "$NP resolve other.test; $NP tcp4 127.0.0.3 " + other.port());
    ASSERT_EQ(s.lines.size(), 2u) << s.result.out;
    EXPECT_NE(s.lines[0], "127.0.0.3");
    EXPECT_EQ(s.lines[1], "EPERM");
    EXPECT_EQ(other.accepted(), 0);
    bool refused = false;
    for (const auto& e : s.audit) refused = refused || (e["event"] == "dns_refused" && e["name"] == "other.test");
    EXPECT_TRUE(refused);
    outcome(join(s.lines) + " (audited: dns_refused, egress_denied)");
}

// ---- clients that never pass through libc ------------------------------------------------

TEST_F(Bypass, StaticBinary) {
    attempt("a statically linked client (busybox wget) to a denied address");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "busybox wget -q -O- http://127.0.0.7:" + bad.port() + "/ 2>&1; echo status $?");
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_NE(s.result.out.find("not permitted"), std::string::npos) << s.result.out;
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port())));
    outcome("wget: Operation not permitted (EPERM, audited)");
}

TEST_F(Bypass, GoStyleRawSyscallClient) {
    attempt("socket() and connect() as raw system calls, as Go programs make them");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "$NP raw-tcp4 127.0.0.7 " + bad.port());
    EXPECT_EQ(s.lines, std::vector<std::string>{"EPERM"}) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    EXPECT_TRUE(has_event(s.audit, "127.0.0.7", std::stoi(bad.port()), "connect4"));
    outcome(join(s.lines) + " (audited)");
}

TEST_F(Bypass, ChildClearsPreloadEnvironment) {
    attempt("a child started with LD_PRELOAD removed (env -u) or an empty environment (env -i)");
    TcpListener bad("127.0.0.7");
    auto s = sandboxed(lo_policy(), "env -u LD_PRELOAD $NP tcp4 127.0.0.7 " + bad.port() + "; env -i $NP tcp4 127.0.0.7 " + bad.port(),
                       {"--env", "LD_PRELOAD="});
    EXPECT_EQ(s.lines, (std::vector<std::string>{"EPERM", "EPERM"})) << s.result.err;
    EXPECT_EQ(bad.accepted(), 0);
    outcome(join(s.lines) + ": enforcement is in the kernel, not in the process");
}
