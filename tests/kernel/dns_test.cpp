// SPDX-License-Identifier: Apache-2.0
// Host-name rules through mcpwarden's resolver: every port-53 flow of the sandbox is redirected
// to it, only allowed names resolve, and their addresses open the kernel allow-list first.
// A test DNS server on loopback (tests/helpers/dnsstub) is the upstream.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"
#include "net_fixtures.h"

using namespace harness;
using namespace std::chrono_literals;
using netfix::DnsStub;

namespace {

// A TCP listener (its own process) counting nothing; we only need connect to succeed.
class Http {
public:
    explicit Http(const std::string& addr) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in s{};
        s.sin_family = AF_INET;
        inet_pton(AF_INET, addr.c_str(), &s.sin_addr);
        ::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s);
        ::listen(fd, 64);
        socklen_t len = sizeof s;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len);
        port_ = ntohs(s.sin_port);
        pid_ = ::fork();
        if (pid_ == 0) {
            for (;;) {
                int c = ::accept(fd, nullptr, nullptr);
                if (c < 0) continue;
                char buf[1024];
                (void)!::read(c, buf, sizeof buf);
                const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
                (void)!::write(c, reply, sizeof reply - 1);
                ::close(c);
            }
        }
        ::close(fd);
    }
    ~Http() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    std::string port() const { return std::to_string(port_); }

private:
    pid_t pid_;
    int port_;
};

std::string policy_file(const std::string& name, const std::string& port, const std::string& extra = "") {
    std::string path = state_dir() + "/" + name + ".yaml";
    std::ofstream(path) << "name: " << name << "\negress:\n  allow:\n"
                        << "    - host: allowed.test\n      ports: [" << port << "]\n"
                        << "    - host: alias.test\n      ports: [" << port << "]\n"
                        << "    - host: \"*.wild.test\"\n      ports: [" << port << "]\n"
                        << "dns:\n  upstream: [\"127.0.0.153:5353\"]\n  allow_reserved_answers: true\n"
                        << extra;
    return path;
}

std::vector<nlohmann::json> audit_lines(const std::string& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    ::unlink(path.c_str());
    return out;
}

class Dns : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        if (IsSkipped()) return;
        upstream_ = std::make_unique<DnsStub>("127.0.0.153", 5353, 60,
                                           std::vector<std::string>{"allowed.test=127.0.0.2", "other.test=127.0.0.3",
                                                                    "alias.test=>chain.test", "chain.test=>allowed.test",
                                                                    "*.wild.test=127.0.0.4", "short.test=127.0.0.5"});
        // A stand-in for a public resolver: it would answer anything with 127.0.0.99.
        public_ = std::make_unique<DnsStub>("127.0.0.154", 53, 60, std::vector<std::string>{"*=127.0.0.99"});
    }
    void TearDown() override {
        upstream_.reset();
        public_.reset();
        KernelTest::TearDown();
    }

    Result run(const std::string& policy, const std::string& script, const std::string& audit) {
        return warden({"run", "--policy", policy, "--audit", audit, "--env", "NP=" + program("netprobe"), "--", "sh", "-c", script});
    }

    std::unique_ptr<DnsStub> upstream_, public_;
};

}  // namespace

TEST_F(Dns, AllowedNameResolvesAndConnectsOthersDoNot) {
    Http http("127.0.0.2"), other("127.0.0.3");
    auto p = policy_file("dns-basic", http.port());
    std::string audit = state_dir() + "/dns-basic.jsonl";
    auto r = run(p, "busybox wget -q -O- http://allowed.test:" + http.port() + "/; echo; "
                    "$NP resolve other.test; $NP tcp4 127.0.0.3 " + other.port() + "; "
                    "$NP resolve a.wild.test; $NP resolve a.b.wild.test; $NP resolve wild.test; $NP resolve alias.test", audit);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::istringstream ss(r.out);
    std::vector<std::string> lines;
    for (std::string l; std::getline(ss, l);) lines.push_back(l);
    ASSERT_EQ(lines.size(), 7u) << r.out;
    EXPECT_EQ(lines[0], "hello");                 // a static client through the redirect
    EXPECT_NE(lines[1].find("ame"), std::string::npos) << lines[1];  // "Name or service not known"-like
    EXPECT_EQ(lines[2], "EPERM");                 // other.test's address, directly: denied
    EXPECT_EQ(lines[3], "127.0.0.4");             // one label under the wildcard
    EXPECT_NE(lines[4], "127.0.0.4");             // two labels: refused
    EXPECT_NE(lines[5], "127.0.0.4");             // the apex: refused
    EXPECT_EQ(lines[6], "127.0.0.2");             // CNAME chain to an allowed answer
    auto events = audit_lines(audit);
    bool refused_other = false, refused_deep = false;
    for (const auto& e : events) {
        if (e["event"] == "dns_refused" && e["name"] == "other.test") refused_other = true;
        if (e["event"] == "dns_refused" && e["name"] == "a.b.wild.test") refused_deep = true;
    }
    EXPECT_TRUE(refused_other);
    EXPECT_TRUE(refused_deep);
    EXPECT_GE(r.report["dns"]["refused"].get<int>(), 3);
    EXPECT_GE(r.report["dns"]["answered"].get<int>(), 1);
}

TEST_F(Dns, QueriesToOtherResolversAreAnsweredByTheWarden) {
    Http http("127.0.0.2");
    auto p = policy_file("dns-redirect", http.port());
    std::string audit = state_dir() + "/dns-redirect.jsonl";
    // Straight to the stand-in public resolver, over UDP (busybox, static) and TCP.
    auto r = run(p, "busybox nslookup allowed.test 127.0.0.154 | grep -A1 '^Name' | tail -1; "
                    "$NP dns-tcp 127.0.0.154 allowed.test; $NP dns-tcp 127.0.0.154 other.test; "
                    "busybox nslookup other.test 127.0.0.154 >/dev/null 2>&1 || echo refused; "
                    "$NP tcp4 127.0.0.154 853", audit);
    EXPECT_EQ(r.out, "Address: 127.0.0.2\n127.0.0.2\nrcode 5\nrefused\nEPERM\n") << r.err;
    auto events = audit_lines(audit);
    bool dot = false;
    for (const auto& e : events) dot = dot || (e.value("port", 0) == 853 && e["rule"].get<std::string>().find("DNS over TLS") != std::string::npos);
    EXPECT_TRUE(dot);
}

// Resolvers on IPv6, v4-mapped and the usual stub address are the warden too.
TEST_F(Dns, Ipv6AndMappedResolverAddressesAreRedirected) {
    Http http("127.0.0.2");
    auto p = policy_file("dns-v6", http.port());
    std::string audit = state_dir() + "/dns-v6.jsonl";
    auto r = run(p, "for s in ::1 ::ffff:127.0.0.154 127.0.0.53 2001:db8::53; do "
                    "busybox nslookup allowed.test $s 2>&1 | grep -A1 '^Name' | tail -1; done", audit);
    EXPECT_EQ(r.out, "Address: 127.0.0.2\nAddress: 127.0.0.2\nAddress: 127.0.0.2\nAddress: 127.0.0.2\n") << r.err;
    audit_lines(audit);
}

// curl, Python and Node are on the host, not in the VM guest: the VM stage excludes *HostOnly*.
TEST_F(Dns, HostOnlyEveryResolverLibraryWorksThroughTheRedirect) {
    Http http("127.0.0.2");
    auto p = policy_file("dns-libs", http.port());
    std::string audit = state_dir() + "/dns-libs.jsonl";
    auto r = run(p, "curl -s -m 5 http://allowed.test:" + http.port() + "/; echo; $NP resolve allowed.test; "
                    "/usr/bin/python3 -c 'import socket; print(socket.getaddrinfo(\"allowed.test\", 80, socket.AF_INET)[0][4][0])'; "
                    "node -e 'require(\"dns\").lookup(\"allowed.test\", 4, (e, a) => console.log(e ? e.code : a))'; "
                    "busybox wget -q -O- http://allowed.test:" + http.port() + "/; echo", audit);
    EXPECT_EQ(r.out, "hello\n127.0.0.2\n127.0.0.2\n127.0.0.2\nhello\n") << r.err;
    audit_lines(audit);
}

TEST_F(Dns, LearnedAddressesExpireAndDenialsNameThem) {
    Http http("127.0.0.5");
    // short.test answers with TTL 1 (the stub's TTL for this test) and min_ttl 1s.
    upstream_.reset();  // the port is taken until the old stub is gone
    upstream_ = std::make_unique<DnsStub>("127.0.0.153", 5353, 1, std::vector<std::string>{"short.test=127.0.0.5"});
    std::string path = state_dir() + "/dns-ttl.yaml";
    std::ofstream(path) << "name: dns-ttl\negress:\n  allow:\n    - host: short.test\n      ports: [" << http.port()
                        << "]\ndns:\n  upstream: [\"127.0.0.153:5353\"]\n  allow_reserved_answers: true\n  min_ttl: 1s\n";
    std::string audit = state_dir() + "/dns-ttl.jsonl";
    auto r = run(path, "$NP tcp4 127.0.0.5 " + http.port() + "; $NP resolve short.test; $NP tcp4 127.0.0.5 " + http.port() +
                           "; sleep 2.5; $NP tcp4 127.0.0.5 " + http.port(), audit);
    // Before resolving: denied. Resolved: allowed. After the TTL: denied again.
    EXPECT_EQ(r.out, "EPERM\n127.0.0.5\nok\nEPERM\n") << r.err;
    auto events = audit_lines(audit);
    int named = 0;
    for (const auto& e : events) named += e.value("name", "") == "short.test" && e["event"] == "egress_denied";
    EXPECT_EQ(named, 1) << "the denial after expiry names the host it was learned for";
}

TEST_F(Dns, ReservedAnswersAreBlockedUnlessAllowed) {
    Http http("127.0.0.2");
    std::string path = state_dir() + "/dns-rebind.yaml";
    std::ofstream(path) << "name: dns-rebind\negress:\n  allow:\n    - host: allowed.test\n      ports: [" << http.port()
                        << "]\ndns:\n  upstream: [\"127.0.0.153:5353\"]\n";
    std::string audit = state_dir() + "/dns-rebind.jsonl";
    auto r = run(path, "$NP resolve allowed.test; $NP tcp4 127.0.0.2 " + http.port(), audit);
    // The answer passes, but its loopback address is not admitted (DNS rebinding).
    EXPECT_EQ(r.out, "127.0.0.2\nEPERM\n") << r.err;
    auto events = audit_lines(audit);
    bool blocked = false;
    for (const auto& e : events) blocked = blocked || e["event"] == "dns_answer_blocked";
    EXPECT_TRUE(blocked);
}

TEST_F(Dns, MalformedQueriesAreDroppedAndCounted) {
    auto p = policy_file("dns-junk", "80");
    std::string audit = state_dir() + "/dns-junk.jsonl";
    auto r = run(p, "$NP udp-raw 10.9.9.9 53 garbage-not-dns; $NP udp-raw 127.0.0.154 53 x; $NP resolve allowed.test", audit);
    EXPECT_EQ(r.out, "ok\nok\n127.0.0.2\n") << r.err;
    EXPECT_EQ(r.report["dns"]["malformed"], 2);
    audit_lines(audit);
}
