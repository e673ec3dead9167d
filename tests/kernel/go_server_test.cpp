// SPDX-License-Identifier: Apache-2.0
// Go servers (issue 11 item 6, issue 12 item 7): a static Go binary makes its system calls
// itself, without libc (no LD_PRELOAD guard sees them), and its runtime uses threads, signals
// and epoll in ways a C or Node server does not. Under the default view and the seccomp filter
// it must run unchanged, and the cgroup's programs must still stop what its policy does not
// allow. goprobe is tests/helpers/go/goprobe.go, built when Go is installed.
#include <unistd.h>

#include "mcp_common.h"
#include "net_fixtures.h"

using namespace harness;
using namespace mcptest;
using namespace netfix;

namespace {

class GoServer : public KernelTest {
protected:
    void SetUp() override {
        KernelTest::SetUp();
        if (::access(MCPWARDEN_BIN_DIR "/goprobe", X_OK) != 0) {
            if (in_ci()) FAIL() << "goprobe was not built: scripts/setup.sh installs golang-go";
            GTEST_SKIP() << "goprobe is built only when Go is installed (apt-get install golang-go)";
        }
    }
    std::string policy() { return write_policy("go-server", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n"); }
};

}  // namespace

TEST_F(GoServer, RunsUnderTheFilterAndTheViewAndIsStillEnforced) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.3");
    UdpReceiver denied_udp("127.0.0.3");
    auto r = warden({"run", "--policy", policy(), "--", program("goprobe"), "checks", "127.0.0.2:" + allowed.port(),
                     "127.0.0.3:" + denied.port(), "127.0.0.3:" + denied_udp.port()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out,
              "seccomp 2\ngoroutines 140\nexec 42\nfile 100000\nstatic true\n"
              "allowed ok\ndenied EPERM\nudp EPERM\n")
        << r.err;
    EXPECT_EQ(allowed.accepted(), 1);
    EXPECT_EQ(denied.accepted(), 0) << "a connection the policy does not allow reached its listener";
    EXPECT_EQ(denied_udp.received(), 0) << "a datagram the policy does not allow arrived";
    EXPECT_EQ(r.report["egress_denied"], 2) << r.report.dump();
}

TEST_F(GoServer, ServesMcpThroughTheRelay) {
    TcpListener allowed("127.0.0.2"), denied("127.0.0.3");
    Options o;
    o.stdin_data = handshake() + request(1, "tools/list") +
                   tool_call(2, "dial", {{"address", "127.0.0.2:" + allowed.port()}}) +
                   tool_call(3, "dial", {{"address", "127.0.0.3:" + denied.port()}});
    auto r = warden({"run", "--mcp", "--policy", policy(), "--", program("goprobe"), "mcp"}, o);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto msgs = messages(r.out);
    EXPECT_EQ(response(msgs, 0)["result"]["serverInfo"]["name"], "goprobe");
    EXPECT_EQ(response(msgs, 1)["result"]["tools"][0]["name"], "dial");
    EXPECT_EQ(response(msgs, 2)["result"]["content"][0]["text"], "ok");
    EXPECT_EQ(response(msgs, 3)["result"]["content"][0]["text"], "EPERM");
    EXPECT_EQ(allowed.accepted(), 1);
    EXPECT_EQ(denied.accepted(), 0);
    EXPECT_EQ(r.report["status"], "exited");
    EXPECT_EQ(r.report["mcp"]["requests"], 4);
    EXPECT_NE(r.err.find("goprobe: stdin closed"), std::string::npos) << r.err;
}
