// SPDX-License-Identifier: Apache-2.0
// Benchmark of the MCP-aware relay (not a test: no pass/fail). In one run, against the same
// bundled server connected directly (the baseline), interleaved so both see the same load:
//   1. round-trip latency of a small tools/call through `mcpwarden run --mcp`;
//   2. throughput of 1 MiB tools/call results;
//   (1 and 2 also through plain `mcpwarden run`, whose stdio is the server's own: the cost of
//   the sandbox alone, to attribute the difference between relay and sandbox)
//   3. `mcpwarden call` end to end against starting the server and calling it directly (and
//      `mcpwarden run -- /bin/true`, the sandbox alone, to attribute the difference);
//   4. with a fourth argument (server-everything's dist/index.js, run by $NODE or /usr/bin/node):
//      a whole client session of a real server (spawn, initialize, tools/list, close stdin,
//      wait for the exit), directly and through `mcpwarden run --policy` (MCP mode).
// Prints medians and ratios. Run as root:
//   build/bin/bench_mcp build/bin/mcpwarden build/bin/mcpwarden-example-server [ROUNDS [SERVER_JS]]
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "bench_mcp: %s\n", why.c_str());
    std::exit(1);
}

// A process we talk newline-delimited JSON-RPC to.
class Peer {
public:
    explicit Peer(const std::vector<std::string>& argv, bool quiet_stderr = true) {
        int in[2], out[2];
        if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC)) die("pipe2");
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            if (quiet_stderr) {
                int null = ::open("/dev/null", O_WRONLY);
                ::dup2(null, 2);
            }
            std::vector<char*> a;
            for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
            a.push_back(nullptr);
            ::execv(a[0], a.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        in_ = in[1];
        out_ = out[0];
    }
    ~Peer() { close(); }
    void send(const std::string& line) {
        size_t off = 0;
        while (off < line.size()) {
            ssize_t n = ::write(in_, line.data() + off, line.size() - off);
            if (n <= 0) die("write to peer failed");
            off += static_cast<size_t>(n);
        }
    }
    std::string recv() {
        for (;;) {
            auto nl = buf_.find('\n', scanned_);
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                scanned_ = 0;
                return line;
            }
            scanned_ = buf_.size();
            char chunk[262144];
            ssize_t n = ::read(out_, chunk, sizeof chunk);
            if (n <= 0) die("peer closed its stdout");
            buf_.append(chunk, static_cast<size_t>(n));
        }
    }
    std::string call(const std::string& line) {
        send(line);
        return recv();
    }
    int close() {
        if (pid_ <= 0) return 0;
        ::close(in_);
        ::close(out_);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

private:
    pid_t pid_ = -1;
    int in_ = -1, out_ = -1;
    std::string buf_;
    size_t scanned_ = 0;
};

const std::string kInit =
    R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}})"
    "\n"
    R"({"jsonrpc":"2.0","method":"notifications/initialized"})"
    "\n";

std::string echo_call(int id) {
    return R"({"jsonrpc":"2.0","id":)" + std::to_string(id) +
           R"(,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ping"}}})" "\n";
}

std::string big_call(int id, int n) {
    return R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":"tools/call","params":{"name":"big","arguments":{"n":)" +
           std::to_string(n) + "}}}\n";
}

void handshake(Peer& p) {
    p.send(kInit);
    // A server may log (notifications) before it answers: the answer is the line with an id.
    std::string line = p.recv();
    for (int i = 0; i < 100 && line.find("\"id\"") == std::string::npos; ++i) line = p.recv();
    if (line.find("\"result\"") == std::string::npos) die("initialize failed: " + line.substr(0, 200));
}

double run_process(const std::vector<std::string>& argv) {
    auto t = Clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 1);
        ::dup2(null, 2);
        std::vector<char*> a;
        for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        ::execv(a[0], a.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("command failed: " + argv[0]);
    return us_since(t);
}

}  // namespace

int main(int argc, char** argv) {
    std::string warden = argc > 1 ? argv[1] : "build/bin/mcpwarden";
    std::string server_src = argc > 2 ? argv[2] : "build/bin/mcpwarden-example-server";
    int rounds = argc > 3 ? std::atoi(argv[3]) : 10;
    if (::geteuid() != 0) die("run as root (mcpwarden run creates cgroups)");

    // The server, where the sandbox user can run it (not under /tmp: the sandbox's /tmp is its
    // own); a policy that lets 1 MiB results through.
    char tmpl[] = "/var/lib/mcpwarden-bench-mcp-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    std::string dir = tmpl;
    ::chmod(dir.c_str(), 0755);
    std::string server = dir + "/server", policy = dir + "/bench.yaml", state = dir + "/state";
    {
        std::ifstream in(server_src, std::ios::binary);
        std::ofstream out(server, std::ios::binary);
        out << in.rdbuf();
        if (!in || !out) die("cannot copy " + server_src);
    }
    ::chmod(server.c_str(), 0755);
    std::ofstream(policy) << "name: bench\nmcp: { max_content_chars: 10000000, max_result_bytes: 16Mi }\n";
    std::vector<std::string> proxied_argv{warden, "run", "--policy", policy, "--state-dir", state, "--", server};

    // 1 and 2: long-lived direct and proxied servers, measured alternately.
    // The server keeps its heap between calls (glibc tunables; direct and sandboxed alike):
    // otherwise each 1 MiB result is fresh mmap memory, and whether its page faults get huge
    // pages varies per process by a factor of two, which drowns what is measured here.
    ::setenv("MALLOC_MMAP_THRESHOLD_", "1073741824", 1);
    ::setenv("MALLOC_TRIM_THRESHOLD_", "1073741824", 1);
    std::vector<std::string> malloc_env{"--env", "MALLOC_MMAP_THRESHOLD_", "--env", "MALLOC_TRIM_THRESHOLD_"};
    proxied_argv.insert(proxied_argv.begin() + 2, malloc_env.begin(), malloc_env.end());
    std::vector<std::string> raw_argv{warden, "run", "--state-dir", state, "--", server};
    raw_argv.insert(raw_argv.begin() + 2, malloc_env.begin(), malloc_env.end());
    Peer direct({server}), proxied(proxied_argv), raw(raw_argv);
    handshake(direct);
    handshake(proxied);
    handshake(raw);
    std::vector<double> rtt_raw, big_raw;
    const int per_round = 500, big_per_round = 10, big_n = 1 << 20;
    std::vector<double> rtt_direct, rtt_proxied, big_direct, big_proxied;
    int id = 1;
    for (int i = 0; i < 50; ++i) {  // warm-up
        direct.call(echo_call(id));
        proxied.call(echo_call(id++));
    }
    direct.call(big_call(id, big_n));
    proxied.call(big_call(id++, big_n));
    // Alternate finely (batches of 25 small calls, single large ones) so that both sides see
    // the same machine load even when it changes quickly (shared CI machines).
    for (int r = 0; r < rounds; ++r) {
        for (int batch = 0; batch < per_round / 25; ++batch) {
            for (int k = 0; k < 3; ++k) {
                int which = (batch + k) % 3;
                Peer& p = which == 0 ? direct : which == 1 ? proxied : raw;
                auto& rtt = which == 0 ? rtt_direct : which == 1 ? rtt_proxied : rtt_raw;
                for (int i = 0; i < 25; ++i) {
                    auto t = Clock::now();
                    std::string reply = p.call(echo_call(id++));
                    rtt.push_back(us_since(t));
                    if (reply.find("ping") == std::string::npos) die("bad echo reply: " + reply.substr(0, 200));
                }
            }
        }
        for (int i = 0; i < 3 * big_per_round; ++i) {
            int which = (i + r) % 3;
            Peer& p = which == 0 ? direct : which == 1 ? proxied : raw;
            auto t = Clock::now();
            std::string reply = p.call(big_call(id++, big_n));
            (which == 0 ? big_direct : which == 1 ? big_proxied : big_raw).push_back(us_since(t));
            if (reply.size() < static_cast<size_t>(big_n) || reply.find("truncated") != std::string::npos)
                die("bad big reply");
        }
    }
    direct.close();
    raw.close();
    int status = proxied.close();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("mcpwarden run did not exit cleanly");

    // 3: one call in a fresh sandbox, against start + handshake + call + exit of the server;
    // warm (another sandbox holds the egress programs loaded, as on a host that runs them).
    std::vector<double> call_direct, call_warden, sandbox_only;
    std::optional<bench::WarmHolder> holder(std::in_place, warden);
    std::vector<std::string> true_argv{warden, "run", "--state-dir", state, "--", "/bin/true"};
    std::vector<std::string> call_argv{warden, "call", "--state-dir", state, "--tool", "echo", "--args",
                                       R"({"text":"ping"})", "--", server};
    for (int i = 0; i < 3 * rounds + 5; ++i) {
        auto t = Clock::now();
        {
            Peer p({server});
            handshake(p);
            if (p.call(echo_call(1)).find("ping") == std::string::npos) die("direct call failed");
            p.close();
        }
        double d = us_since(t);
        double w = run_process(call_argv);
        double t0 = run_process(true_argv);  // the sandbox alone, for attribution
        if (i >= 5) {  // warm-up
            call_direct.push_back(d);
            call_warden.push_back(w);
            sandbox_only.push_back(t0);
        }
    }
    // 4: a real server's whole session, as a client's start-up and shut-down see it: warm
    // (the holder above keeps the egress programs loaded, as an agent or any running sandbox
    // does) and then cold (nothing of mcpwarden loaded: each run verifies and loads the
    // programs, and as their last user removes them).
    std::vector<double> session_direct, session_warden, cold_direct, cold_warden;
    std::function<void(std::vector<double>&, std::vector<double>&)> sessions = [](auto&, auto&) {};
    if (argc > 4) {
        const char* node_env = std::getenv("NODE");
        std::string node = node_env ? node_env : "/usr/bin/node";
        std::vector<std::string> direct_argv{node, argv[4], "stdio"};
        std::vector<std::string> warden_argv{warden, "run", "--policy", policy, "--state-dir", state, node, argv[4], "stdio"};
        const std::string list = R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})" "\n";
        auto session = [list](const std::vector<std::string>& a) {
            auto t = Clock::now();
            Peer p(a);
            handshake(p);
            if (p.call(list).find("\"tools\"") == std::string::npos) die("tools/list failed");
            int status = p.close();
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("session did not end cleanly: " + a[0]);
            return us_since(t);
        };
        sessions = [=](std::vector<double>& direct_out, std::vector<double>& warden_out) {
            for (int i = 0; i < 2 * rounds + 3; ++i) {
                bool warden_first = i % 2 == 1;  // alternate the order as well
                double a = session(warden_first ? warden_argv : direct_argv);
                double b = session(warden_first ? direct_argv : warden_argv);
                if (i < 3) continue;  // warm-up
                direct_out.push_back(warden_first ? b : a);
                warden_out.push_back(warden_first ? a : b);
            }
        };
    }
    sessions(session_direct, session_warden);
    holder.reset();
    sessions(cold_direct, cold_warden);
    std::string rm = "rm -rf '" + dir + "'";
    if (std::system(rm.c_str()) != 0) std::fprintf(stderr, "bench_mcp: could not remove %s\n", dir.c_str());

    double md = bench::median(rtt_direct), mp = bench::median(rtt_proxied);
    double bd = bench::median(big_direct), bp = bench::median(big_proxied);
    double mib_direct = 1e6 / bd, mib_proxied = 1e6 / bp;  // 1 MiB per call: MiB/s
    double cd = bench::median(call_direct), cw = bench::median(call_warden);
    std::printf("benchmark: MCP over stdio, direct vs through mcpwarden (%d rounds, interleaved)\n", rounds);
    std::printf("  small tools/call round trip  direct  median %7.1f us  p90 %7.1f us  (%zu calls)\n", md, bench::percentile(rtt_direct, 0.9), rtt_direct.size());
    std::printf("                               run --mcp median %7.1f us  p90 %7.1f us\n", mp, bench::percentile(rtt_proxied, 0.9));
    std::printf("                               added   median %7.1f us   goal <= 50 us: %s\n", mp - md, mp - md <= 50 ? "met" : "NOT met");
    std::printf("                               run (no relay) median %7.1f us\n", bench::median(rtt_raw));
    std::printf("  1 MiB tools/call results     direct  median %7.2f ms  %7.1f MiB/s  (%zu calls)\n", bd / 1000, mib_direct, big_direct.size());
    std::printf("                               run --mcp median %7.2f ms  %7.1f MiB/s\n", bp / 1000, mib_proxied);
    std::printf("                               ratio   %5.1f%% of direct   goal >= 80%%: %s\n", 100 * mib_proxied / mib_direct,
                mib_proxied >= 0.8 * mib_direct ? "met" : "NOT met");
    std::printf("                               run (no relay) median %7.2f ms  %7.1f MiB/s (%.1f%% of direct)\n",
                bench::median(big_raw) / 1000, 1e6 / bench::median(big_raw), 100 * (1e6 / bench::median(big_raw)) / mib_direct);
    std::printf("  one call, process to result  direct  median %7.2f ms  p90 %7.2f ms  (%zu runs)\n", cd / 1000, bench::percentile(call_direct, 0.9) / 1000, call_direct.size());
    std::printf("                               call    median %7.2f ms  p90 %7.2f ms\n", cw / 1000, bench::percentile(call_warden, 0.9) / 1000);
    std::printf("                               added   median %7.2f ms  ratio %.1fx\n", (cw - cd) / 1000, cw / cd);
    std::printf("  for reference: run -- /bin/true  median %7.2f ms (sandbox set-up and tear-down alone)\n",
                bench::median(sandbox_only) / 1000);
    auto print_sessions = [](const char* which, const std::vector<double>& direct, const std::vector<double>& through) {
        if (direct.empty()) return;
        double sd = bench::median(direct), sw = bench::median(through);
        std::printf("  server-everything session, %s (spawn, initialize, tools/list, close)\n", which);
        std::printf("                               direct  median %7.2f ms  p90 %7.2f ms  (%zu sessions)\n", sd / 1000,
                    bench::percentile(direct, 0.9) / 1000, direct.size());
        std::printf("                               run     median %7.2f ms  p90 %7.2f ms\n", sw / 1000,
                    bench::percentile(through, 0.9) / 1000);
        std::printf("                               added   median %7.2f ms   goal <= 30 ms: %s\n", (sw - sd) / 1000,
                    sw - sd <= 30000 ? "met" : "NOT met");
    };
    print_sessions("warm: programs loaded by another sandbox", session_direct, session_warden);
    print_sessions("cold: nothing of mcpwarden loaded", cold_direct, cold_warden);
    return 0;
}
