// Benchmark: `mcpwarden run -- /bin/true` against `/bin/true` alone, interleaved so both see the
// same machine load. Prints medians and the ratio; not a test (no pass/fail).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double run_once(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    auto start = std::chrono::steady_clock::now();
    pid_t pid = fork();
    if (pid == 0) {
        execv(args[0], args.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "command failed: %s\n", argv[0].c_str());
        std::exit(1);
    }
    return us;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(p * (v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
    std::string warden = argc > 1 ? argv[1] : "build/bin/mcpwarden";
    int runs = argc > 2 ? std::atoi(argv[2]) : 200;
    std::vector<std::string> extra;
    for (int i = 3; i < argc; ++i) extra.push_back(argv[i]);
    std::vector<std::string> baseline{"/bin/true"};
    std::vector<std::string> sandboxed{warden, "run"};
    sandboxed.insert(sandboxed.end(), extra.begin(), extra.end());
    sandboxed.insert(sandboxed.end(), {"--", "/bin/true"});
    // Warm up: page cache, pinned BPF programs, state directories.
    for (int i = 0; i < 5; ++i) {
        run_once(baseline);
        run_once(sandboxed);
    }
    std::vector<double> base, sand;
    for (int i = 0; i < runs; ++i) {
        base.push_back(run_once(baseline));
        sand.push_back(run_once(sandboxed));
    }
    double mb = median(base), ms = median(sand);
    std::string flags;
    for (const auto& e : extra) flags += " " + e;
    std::printf("benchmark: mcpwarden run%s -- /bin/true vs /bin/true (%d interleaved runs each)\n",
                flags.c_str(), runs);
    std::printf("  /bin/true alone        median %8.3f ms  p90 %8.3f ms\n", mb / 1000, percentile(base, 0.9) / 1000);
    std::printf("  mcpwarden run          median %8.3f ms  p90 %8.3f ms\n", ms / 1000, percentile(sand, 0.9) / 1000);
    std::printf("  overhead               median %8.3f ms  ratio %.1fx\n", (ms - mb) / 1000, ms / mb);
    std::printf("  goal: warm run median <= 4 ms: %s\n", ms <= 4000 ? "met" : "NOT met");
    return 0;
}
