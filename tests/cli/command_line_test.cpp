// SPDX-License-Identifier: Apache-2.0
// `run` and `call` command lines as MCP clients write them (`run --policy P npx -y pkg`), without
// root: mcpwarden is pointed at a stand-in agent ($MCPWARDEN_AGENT), and the request it sends
// names the command as mcpwarden read it. The kernel suite runs the same forms for real.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "harness.h"

using harness::Result;
using nlohmann::json;

namespace {

// Takes one connection, keeps the first line (the request) and hangs up: mcpwarden then fails
// with "the agent closed the connection", after having said what it would run. The stdio it
// passes along (SCM_RIGHTS) is not taken, so it is closed with the message.
class FakeAgent : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/mcpwarden-argv-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/agent.sock";
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(fd_, 0);
        ASSERT_EQ(::bind(fd_, address(), sizeof addr_), 0) << std::strerror(errno);
        ASSERT_EQ(::listen(fd_, 4), 0);
    }
    void TearDown() override {
        if (fd_ >= 0) ::close(fd_);
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    sockaddr* address() {
        addr_.sun_family = AF_UNIX;
        std::strncpy(addr_.sun_path, path_.c_str(), sizeof addr_.sun_path - 1);
        return reinterpret_cast<sockaddr*>(&addr_);
    }

    // The command of the request `mcpwarden <args>` sends the agent (null when it sent none).
    json command_of(const std::vector<std::string>& args) {
        json request;
        std::atomic<bool> accepted{false};
        std::thread agent([&] {
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            accepted = true;
            if (c < 0) return;
            std::string line;
            char buf[4096];
            while (line.find('\n') == std::string::npos) {
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) break;
                line.append(buf, static_cast<std::size_t>(n));
            }
            ::close(c);
            if (line.find('\n') != std::string::npos) request = json::parse(line.substr(0, line.find('\n')), nullptr, false);
        });
        std::vector<std::string> argv{MCPWARDEN_BIN};
        argv.insert(argv.end(), args.begin(), args.end());
        harness::Options o;
        o.env["MCPWARDEN_AGENT"] = path_;
        o.kill_after = std::chrono::seconds(30);
        Result r = harness::command(argv, o);
        // mcpwarden got its EOF after the stand-in accepted it; had it not connected, this
        // connection ends the stand-in's wait (and none is left for the next call to take).
        if (!accepted) {
            int poke = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            ::connect(poke, address(), sizeof addr_);
            ::close(poke);
        }
        agent.join();
        EXPECT_NE(r.exit_code, 64) << r.err;  // not a usage error
        EXPECT_EQ(r.out.find("Usage:"), std::string::npos) << r.out;  // nor mcpwarden's --help
        EXPECT_TRUE(request.is_object()) << r.err;
        return request.is_object() ? request.value("command", json()) : json();
    }

    std::string dir_, path_;
    int fd_ = -1;
    sockaddr_un addr_{};
};

}  // namespace

TEST_F(FakeAgent, OptionsEndAtTheCommand) {
    // "command": "mcpwarden", "args": ["run", "--policy", "github", "npx", "-y", "pkg"]
    EXPECT_EQ(command_of({"run", "--policy", "github", "npx", "-y", "x"}), json::array({"npx", "-y", "x"}));
    EXPECT_EQ(command_of({"run", "--policy", "github", "node", "srv.js", "--help"}), json::array({"node", "srv.js", "--help"}));
    EXPECT_EQ(command_of({"run", "--policy=github", "cmd", "--help"}), json::array({"cmd", "--help"}));
    // mcpwarden's option names after the command are the command's.
    EXPECT_EQ(command_of({"run", "--timeout", "30s", "--env", "A=1", "--policy", "github", "cmd", "--policy", "other",
                          "--timeout=1s", "-h"}),
              json::array({"cmd", "--policy", "other", "--timeout=1s", "-h"}));
    // Global options before the subcommand.
    EXPECT_EQ(command_of({"--log-level", "error", "run", "--policy", "github", "cmd", "-y"}), json::array({"cmd", "-y"}));
}

TEST_F(FakeAgent, AnExplicitDoubleDashIsAccepted) {
    // As Inspector 0.15's configurations write it (and as needed for a command starting with "-").
    EXPECT_EQ(command_of({"run", "--policy", "github", "--", "cmd", "--help"}), json::array({"cmd", "--help"}));
    EXPECT_EQ(command_of({"run", "--policy", "github", "--", "npx", "-y", "x"}), json::array({"npx", "-y", "x"}));
    EXPECT_EQ(command_of({"run", "--policy", "github", "--", "-cmd", "x"}), json::array({"-cmd", "x"}));
}

TEST_F(FakeAgent, CallReadsItsCommandLineTheSameWay) {
    EXPECT_EQ(command_of({"call", "--policy", "github", "--method", "tools/list", "npx", "-y", "x", "--help"}),
              json::array({"npx", "-y", "x", "--help"}));
    EXPECT_EQ(command_of({"call", "--policy", "github", "--method", "tools/list", "--", "srv", "--ignore-term"}),
              json::array({"srv", "--ignore-term"}));
}

TEST(CommandLine, HelpIsMcpwardensOnlyWithoutACommand) {
    Result r = harness::warden({"run", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Run CMD in a fresh sandbox"), std::string::npos);
}
