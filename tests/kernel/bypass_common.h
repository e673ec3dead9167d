// SPDX-License-Identifier: Apache-2.0
// The bypass suite's fixture (docs/security.md), shared by the files of the suite: each attempt
// is a TEST_F(Bypass, ...) that records what it tried ("attempt"), what the sandbox saw
// ("outcome") and, outside the egress part, which part of the table it belongs to ("part").
#pragma once

#include <sys/utsname.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "net_fixtures.h"

namespace bypass {

using namespace harness;
using namespace netfix;

inline std::string join(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += (out.empty() ? "" : "; ") + l;
    return out;
}

// Runs as nobody outside any sandbox: the control showing an attempt works without mcpwarden.
inline Result as_nobody(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
    return command(argv);
}

// utime + stime of one process (all its threads, not its children), in seconds; -1 when it is gone.
inline double cpu_seconds(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(file, stat);
    auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

class Bypass : public KernelTest {
public:
    static void SetUpTestSuite() {
        utsname u{};
        ::uname(&u);
        RecordProperty("kernel", u.release);
        RecordProperty("cgroup", std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers") ? "pure v2" : "hybrid");
    }

protected:
    // What a test leaves (cgroups, processes) is KernelTest's to judge; pins are judged after
    // the whole suite (scripts/kernel-hygiene.sh): other suites' sandboxes pin concurrently.
    static void attempt(const std::string& text) { RecordProperty("attempt", text); }
    static void outcome(const std::string& text) { RecordProperty("outcome", text); }
    // The table's part for this attempt (scripts/security-table.py); none = the egress part.
    // Used: "isolation" (between sandboxes and from the host).
    static void part(const std::string& name) { RecordProperty("part", name); }

    // The usual policy: loopback 127.0.0.2 is the one allowed destination.
    std::string lo_policy() { return write_policy("bypass-lo", "egress:\n  allow:\n    - cidr: 127.0.0.2/32\n"); }
    std::string open_policy() { return write_policy("bypass-open", "egress:\n  allow:\n    - cidr: 0.0.0.0/0\n    - cidr: ::/0\n"); }
};

// Listeners in a namespace of the test's own on a veth holding 10.1.2.3/24, 169.254.169.254 and
// a multicast route; the sandbox runs inside it (nsenter before mcpwarden).
struct OutsideNet {
    NetNs ns;
    OutsideNet() : ns("mwbyp") {
        command({"ip", "-n", ns.name, "link", "add", "mw0", "type", "veth", "peer", "name", "mw1"});
        command({"ip", "-n", ns.name, "addr", "add", "10.1.2.3/24", "brd", "+", "dev", "mw0"});
        command({"ip", "-n", ns.name, "addr", "add", "169.254.169.254/32", "dev", "mw0"});
        command({"ip", "-n", ns.name, "link", "set", "mw0", "up"});
        command({"ip", "-n", ns.name, "link", "set", "mw1", "up"});
        command({"ip", "-n", ns.name, "route", "add", "224.0.0.0/4", "dev", "mw0"});
        command({"ip", "-n", ns.name, "route", "add", "255.255.255.255/32", "dev", "mw0"});
    }
};

}  // namespace bypass
