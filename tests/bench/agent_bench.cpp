// SPDX-License-Identifier: Apache-2.0
// Benchmark (root): N sandboxes created through `mcpwarden agent` and kept running at once
// (small sleepers), on one connection. Prints sandboxes created per second, the median and p95
// create-to-exec latency (as the agent measures it: request read to server exec'd, and as the
// client sees it: request sent to "started" received), the agent's RSS with N running, and, as
// the baseline of the same run, fork+exec of the same sleeper without a sandbox. Not a test.
//
//   bench_agent BUILD/bin/mcpwarden [N=1000] [IN_FLIGHT=32] [LIMITS='{ pids: 4, memory: 16Mi }']
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent_client.h"

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

#include "bench_common.h"

namespace {

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

long threads_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Threads:", 0) == 0) return std::atol(line.c_str() + 8);
    return -1;
}

// fork+exec of `sleep 600` and the time until exec succeeded (a close-on-exec pipe closes).
double baseline_spawn_us(std::vector<pid_t>& pids) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) std::exit(1);
    auto t0 = Clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
        ::execl("/bin/sleep", "sleep", "600", nullptr);
        ::_exit(127);
    }
    ::close(p[1]);
    char c;
    (void)!::read(p[0], &c, 1);
    ::close(p[0]);
    pids.push_back(pid);
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "bench_agent runs the agent: run it as root\n");
        return 1;
    }
    std::string warden = argc > 1 ? argv[1] : "build/bin/mcpwarden";
    int n = argc > 2 ? std::atoi(argv[2]) : 1000;
    int in_flight = argc > 3 ? std::max(1, std::atoi(argv[3])) : 32;
    std::string limits = argc > 4 ? argv[4] : "{ pids: 4, memory: 16Mi }";
    std::string dir = "/tmp/mcpwarden-bench-agent-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir + "/policies");
    std::filesystem::create_directories(dir + "/state");
    ::chmod(dir.c_str(), 0755);
    ::chmod((dir + "/state").c_str(), 0755);
    std::ofstream(dir + "/policies/sleeper.yaml") << "name: sleeper\nlimits: " << limits << "\n";
    std::ofstream(dir + "/agent.yaml") << "socket: " << dir << "/agent.sock\npolicy_dir: " << dir
                                       << "/policies\nstate_dir: " << dir << "/state\nlimits: { max_sandboxes: " << n
                                       << ", queue_length: 0 }\n";
    pid_t agent = ::fork();
    if (agent == 0) {
        ::execl(warden.c_str(), warden.c_str(), "--log-level", "error", "agent", "--config", (dir + "/agent.yaml").c_str(),
                nullptr);
        ::_exit(127);
    }
    std::optional<mcpwarden::AgentClient> client;
    for (int i = 0; i < 400 && !client; ++i) {
        client = mcpwarden::AgentClient::connect(dir + "/agent.sock");
        if (!client) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!client) {
        std::fprintf(stderr, "the agent did not start\n");
        return 1;
    }
    long rss_idle = rss_kib(agent);

    // Baseline: the same sleeper without any sandbox, N of them alive at once.
    std::vector<double> base;
    std::vector<pid_t> base_pids;
    for (int i = 0; i < n; ++i) base.push_back(baseline_spawn_us(base_pids));
    for (pid_t p : base_pids) ::kill(p, SIGKILL);
    for (pid_t p : base_pids) ::waitpid(p, nullptr, 0);

    // N sandboxes, sent one after the other as fast as the agent starts them (at most IN_FLIGHT
    // requests waiting at once, as a pool of clients would).
    std::map<int, Clock::time_point> sent;
    std::vector<double> agent_us, client_us;
    int started = 0, failed = 0, next = 0;
    auto t0 = Clock::now();
    std::string first_error;
    while (started + failed < n) {
        while (next < n && next - started - failed < in_flight) {
            json req = {{"v", 1}, {"id", next}, {"op", "create"}, {"policy", "sleeper"},
                        {"command", {"sleep", "600"}}, {"stdio", "null"}};
            sent[next] = Clock::now();
            client->send(req);
            ++next;
        }
        auto m = client->receive(nullptr, 30000);
        if (!m) {
            std::fprintf(stderr, "no answer from the agent\n");
            break;
        }
        if (m->value("event", "") == "started") {
            ++started;
            int id = (*m)["id"];
            client_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent[id]).count());
            agent_us.push_back(m->value("create_to_exec_us", 0.0));
        } else if (m->contains("ok") && (*m)["ok"] == false) {
            ++failed;
            if (first_error.empty()) first_error = (*m)["error"].dump();
        }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    long rss_full = rss_kib(agent);
    long threads = threads_of(agent);
    if (const char* pause = std::getenv("BENCH_AGENT_PAUSE")) {  // time to inspect the agent at full load
        std::printf("agent pid %d; pausing %s s\n", agent, pause);
        std::fflush(stdout);
        ::sleep(static_cast<unsigned>(std::atoi(pause)));
    }
    if (const char* smaps = std::getenv("BENCH_AGENT_SMAPS")) {  // where the memory is, at full load
        std::ifstream in("/proc/" + std::to_string(agent) + "/smaps");
        std::ofstream(smaps) << in.rdbuf();
    }

    std::printf("sandboxes running at once:       %d of %d (%d refused%s%s)\n", started, n, failed,
                first_error.empty() ? "" : "; first: ", first_error.c_str());
    std::printf("created per second:              %.0f\n", started / secs);
    std::printf("create-to-exec, agent (median):  %.2f ms (p95 %.2f ms)\n", bench::median(agent_us) / 1000,
                bench::percentile(agent_us, 0.95) / 1000);
    std::printf("create-to-exec, client (median): %.2f ms (p95 %.2f ms)\n", bench::median(client_us) / 1000,
                bench::percentile(client_us, 0.95) / 1000);
    std::printf("baseline fork+exec (median):     %.2f ms (p95 %.2f ms); agent/baseline %.1fx\n", bench::median(base) / 1000,
                bench::percentile(base, 0.95) / 1000, bench::median(agent_us) / std::max(1.0, bench::median(base)));
    std::printf("agent RSS: idle %ld KiB, with %d running %ld KiB (%.1f KiB per sandbox); threads %ld\n", rss_idle,
                started, rss_full, started ? double(rss_full - rss_idle) / started : 0.0, threads);

    // Closing the connection ends every sandbox; then the agent stops.
    client.reset();
    auto until = Clock::now() + std::chrono::seconds(120);
    for (;;) {
        auto c = mcpwarden::AgentClient::connect(dir + "/agent.sock");
        if (!c) break;
        c->send({{"v", 1}, {"id", 1}, {"op", "list"}});
        json l = c->result(1);
        if (l["running"] == 0 || Clock::now() > until) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ::kill(agent, SIGTERM);
    ::waitpid(agent, nullptr, 0);
    std::filesystem::remove_all(dir);
    return 0;
}
