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
//      wait for the exit), directly and through `mcpwarden run --policy` (MCP mode). Both end
//      alike: the client has the list and the process it started is reaped (node directly;
//      mcpwarden, which ends after the server and its sandbox are gone). Both servers get the
//      same environment, the one mcpwarden gives (a caller's NODE_EXTRA_CA_CERTS, say, makes
//      node parse a CA bundle at start-up, ~100 ms that only the direct session would pay).
// Prints medians and ratios. Whatever ends it (an error, SIGINT, SIGTERM, SIGHUP), it removes
// what it made: its sandboxes, the warm holder, its directory. Run as root:
//   build/bin/bench_mcp build/bin/mcpwarden build/bin/mcpwarden-example-server [ROUNDS [SERVER_JS]]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

// die() unwinds to main, so that every Peer, the warm holder and the directory are cleaned up
// on the way (std::exit would skip their destructors).
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void die(const std::string& why) { throw Failure(why); }

// A signal that ends the benchmark: its handler only records it; the system call it interrupts
// (no SA_RESTART) fails with EINTR and the caller dies, unwinding like any other failure.
volatile sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

void check_signal() {
    if (g_signal) die("interrupted by signal " + std::to_string(g_signal));
}

// Whether a failed system call is to be retried: EINTR without an ending signal.
bool retry(ssize_t r) {
    if (r >= 0 || errno != EINTR) return false;
    check_signal();
    return true;
}

// The benchmark's directory under /var/lib, removed on every way out of main.
class BenchDir {
public:
    BenchDir() {
        char tmpl[] = "/var/lib/mcpwarden-bench-mcp-XXXXXX";
        if (!::mkdtemp(tmpl)) die("mkdtemp");
        path_ = tmpl;
    }
    ~BenchDir() {
        std::string rm = "rm -rf '" + path_ + "'";
        if (std::system(rm.c_str()) != 0) std::fprintf(stderr, "bench_mcp: could not remove %s\n", path_.c_str());
    }
    BenchDir(const BenchDir&) = delete;
    BenchDir& operator=(const BenchDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A process we talk newline-delimited JSON-RPC to.
class Peer {
public:
    // With env, the process gets exactly that environment; otherwise ours.
    explicit Peer(const std::vector<std::string>& argv, bool quiet_stderr = true,
                  const std::vector<std::string>* env = nullptr) {
        std::vector<char*> a, e;
        for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
        a.push_back(nullptr);
        if (env) {
            for (const auto& s : *env) e.push_back(const_cast<char*>(s.c_str()));
            e.push_back(nullptr);
        }
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
            ::execve(a[0], a.data(), env ? e.data() : environ);
            ::_exit(127);
        }
        if (pid_ < 0) die("fork");
        ::close(in[0]);
        ::close(out[1]);
        in_ = in[1];
        out_ = out[0];
    }
    ~Peer() { close(); }
    void send(const std::string& line) {
        check_signal();  // one that came between two system calls
        size_t off = 0;
        while (off < line.size()) {
            ssize_t n = ::write(in_, line.data() + off, line.size() - off);
            if (retry(n)) continue;
            if (n <= 0) die("write to peer failed");
            off += static_cast<size_t>(n);
        }
    }
    std::string recv() {
        check_signal();
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
            if (retry(n)) continue;
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
        // Reaped even when a signal ends the benchmark meanwhile (this runs while unwinding
        // too): the process ends on its own once its stdin is closed.
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
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

// One session's times, in µs from the spawn.
struct Phases {
    double initialized = 0, listed = 0, ended = 0;
};

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
    if (pid < 0) die("fork");
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    check_signal();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("command failed: " + argv[0]);
    return us_since(t);
}

}  // namespace

static int bench_main(int argc, char** argv) {
    std::string warden = argc > 1 ? argv[1] : "build/bin/mcpwarden";
    std::string server_src = argc > 2 ? argv[2] : "build/bin/mcpwarden-example-server";
    int rounds = argc > 3 ? std::atoi(argv[3]) : 10;
    if (::geteuid() != 0) die("run as root (mcpwarden run creates cgroups)");

    // The server, where the sandbox user can run it (not under /tmp: the sandbox's /tmp is its
    // own); a policy that lets 1 MiB results through.
    BenchDir bench_dir;
    const std::string& dir = bench_dir.path();
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
    // The heap settings were for the 1 MiB results; the processes started from here on get
    // the environment they would get from a client.
    ::unsetenv("MALLOC_MMAP_THRESHOLD_");
    ::unsetenv("MALLOC_TRIM_THRESHOLD_");

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
    // programs, and as their last user removes them). Each session is timed from the spawn to
    // the initialize result, to the tools/list result, and to the reaping of the process the
    // client started, after it closed that process's stdin and stdout: for the direct session
    // node itself; through mcpwarden, mcpwarden, which exits once the server and its sandbox
    // are gone. So both end when the client has the list and the server no longer runs.
    std::vector<Phases> session_direct, session_warden, cold_direct, cold_warden;
    std::function<void(std::vector<Phases>&, std::vector<Phases>&)> sessions = [](auto&, auto&) {};
    if (argc > 4) {
        const char* node_env = std::getenv("NODE");
        std::string node = node_env ? node_env : "/usr/bin/node";
        // The direct server gets the environment the sandboxed one gets (what mcpwarden passes,
        // read from a run of env under the same policy name), not ours: the session measures
        // the same server doing the same work.
        std::string env_policy = dir + "/bench-env.yaml";
        std::ofstream(env_policy) << "name: bench\n";
        std::vector<std::string> server_env;
        {
            std::istringstream lines(bench::run_capture({warden, "run", "--policy", env_policy, "--state-dir", state,
                                                         "--", "/usr/bin/env"},
                                                        false));
            for (std::string line; std::getline(lines, line);)
                if (!line.empty()) server_env.push_back(line);
        }
        if (server_env.empty()) die("mcpwarden run -- /usr/bin/env printed no environment");
        std::vector<std::string> direct_argv{node, argv[4], "stdio"};
        std::vector<std::string> warden_argv{warden, "run", "--policy", policy, "--state-dir", state, node, argv[4], "stdio"};
        const std::string list = R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})" "\n";
        auto session = [list](const std::vector<std::string>& a, const std::vector<std::string>* env) {
            Phases ph;
            auto t = Clock::now();
            Peer p(a, true, env);
            handshake(p);
            ph.initialized = us_since(t);
            if (p.call(list).find("\"tools\"") == std::string::npos) die("tools/list failed");
            ph.listed = us_since(t);
            int status = p.close();
            ph.ended = us_since(t);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("session did not end cleanly: " + a[0]);
            return ph;
        };
        sessions = [=](std::vector<Phases>& direct_out, std::vector<Phases>& warden_out) {
            for (int i = 0; i < 2 * rounds + 3; ++i) {
                bool warden_first = i % 2 == 1;  // alternate the order as well
                Phases a = warden_first ? session(warden_argv, nullptr) : session(direct_argv, &server_env);
                Phases b = warden_first ? session(direct_argv, &server_env) : session(warden_argv, nullptr);
                if (i < 3) continue;  // warm-up
                direct_out.push_back(warden_first ? b : a);
                warden_out.push_back(warden_first ? a : b);
            }
        };
    }
    sessions(session_direct, session_warden);
    holder.reset();
    sessions(cold_direct, cold_warden);

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
    auto print_sessions = [](const char* which, const std::vector<Phases>& direct, const std::vector<Phases>& through) {
        if (direct.empty()) return;
        auto med = [](const std::vector<Phases>& v, double Phases::*f) {
            std::vector<double> x;
            for (const auto& p : v) x.push_back(p.*f);
            return bench::median(x);
        };
        auto p90 = [](const std::vector<Phases>& v) {
            std::vector<double> x;
            for (const auto& p : v) x.push_back(p.ended);
            return bench::percentile(x, 0.9);
        };
        double sd = med(direct, &Phases::ended), sw = med(through, &Phases::ended);
        std::printf("  server-everything session, %s (spawn, initialize, tools/list, close, reaped)\n", which);
        std::printf("                               direct  median %7.2f ms  p90 %7.2f ms  (%zu sessions)\n", sd / 1000,
                    p90(direct) / 1000, direct.size());
        std::printf("                               run     median %7.2f ms  p90 %7.2f ms\n", sw / 1000, p90(through) / 1000);
        std::printf("                               added   median %7.2f ms   goal <= 30 ms: %s\n", (sw - sd) / 1000,
                    sw - sd <= 30000 ? "met" : "NOT met");
        std::printf("                               phases (median ms from spawn)  initialize result  tools/list result  reaped\n");
        for (auto [name, v] : {std::pair{"direct", &direct}, std::pair{"run", &through}})
            std::printf("                               %-6s %*s%9.2f %18.2f %10.2f\n", name, 24, "",
                        med(*v, &Phases::initialized) / 1000, med(*v, &Phases::listed) / 1000, med(*v, &Phases::ended) / 1000);
    };
    print_sessions("warm: programs loaded by another sandbox", session_direct, session_warden);
    print_sessions("cold: nothing of mcpwarden loaded", cold_direct, cold_warden);
    return 0;
}

int main(int argc, char** argv) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // no SA_RESTART: the blocking call fails with EINTR
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);  // a peer that died is an error of write(), not our end
    try {
        return bench_main(argc, argv);
    } catch (const Failure& f) {
        std::fprintf(stderr, "bench_mcp: %s\n", f.what());
        return 1;
    }
}
