// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the kernel tests: they run the real mcpwarden binary as root against real
// cgroups (and, for egress, real BPF programs and loopback sockets).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace harness {

// In CI (CI=true) a kernel test that cannot run is a failure; elsewhere it is skipped.
#define REQUIRE_ROOT()                                                                  \
    do {                                                                                \
        if (::geteuid() != 0) {                                                         \
            if (harness::in_ci()) FAIL() << "kernel tests must run as root in CI";       \
            GTEST_SKIP() << "kernel tests need root";                                   \
        }                                                                               \
    } while (0)

bool in_ci();

struct Result {
    int exit_code = -1;   // 128+N when killed by signal N
    std::string out, err;
    nlohmann::json report;  // parsed --report, when one was written
    std::chrono::milliseconds elapsed{0};
};

struct Options {
    std::string stdin_data;
    bool close_stdin = true;
    std::map<std::string, std::string> env;  // added to the environment
    std::vector<int> keep_fds;               // fds the child inherits as they are
    std::chrono::seconds kill_after{120};
};

// Runs `mcpwarden <args>` (a --report and a private --state-dir are added for `run`).
Result warden(const std::vector<std::string>& args, const Options& opts = {});
// Runs any command the same way.
Result command(const std::vector<std::string>& argv, const Options& opts = {});
// What `mcpwarden run -- true` takes here and now: a sandbox's setup and teardown, measured
// afresh at each call. Tests that bound a run's time (a shutdown wait that must not happen)
// bound what comes on top of it, so a loaded or emulated machine does not fail them.
std::chrono::milliseconds start_cost();

// A directory every user can read, holding copies of the test programs (the build tree may
// sit under a path the sandbox user cannot traverse).
std::string program(const std::string& name);  // "example-server", "memhog", ...
std::string state_dir();

// Entries of a directory other than . and .. (0 when it does not exist).
int directory_entries(const std::string& path);

// What mcpwarden keeps only while it is used, found unused: the sandboxes' parent cgroups
// when empty, and its bpffs directory when no process holds the objects (flock on bpffs).
std::vector<std::string> leftover_shared_state();

// Sandbox cgroups left on the machine (any hierarchy) and processes still inside one.
std::vector<std::string> leftover_cgroups();
std::vector<pid_t> leftover_processes();

// Starts `mcpwarden run --policy <policy> -- sh -c <script>` (stdio on /dev/null), waits until
// `processes` processes run in sandboxes, then kills mcpwarden with SIGKILL: what the script
// started stays behind in the crashed run's sandbox. False when they did not all start.
bool crash_run(const std::string& policy, const std::string& script, std::size_t processes = 3);

// Fixture base: checks root, and after each test that nothing of it is left behind. What
// was already there when the test began (an earlier run killed mid-test, another suite on the
// machine) is not the test's: only what appeared during the test counts.
class KernelTest : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

private:
    std::vector<std::string> cgroups_before_, shared_before_;
    std::vector<pid_t> processes_before_;
};

}  // namespace harness
