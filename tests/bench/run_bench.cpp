// SPDX-License-Identifier: Apache-2.0
// Benchmark: `mcpwarden run -- /bin/true` against `/bin/true` alone, interleaved so both see the
// same machine load. Prints medians and the ratio; not a test (no pass/fail).
//
// And, warm, against bubblewrap giving a comparable process and filesystem view
// (`bwrap --unshare-all --new-session --die-with-parent --ro-bind / / --dev /dev --proc /proc
// --tmpfs /tmp /bin/true`), the three interleaved: at or below bwrap's median is the goal.
//
// Two figures: cold, a run while no other mcpwarden process uses the egress programs (it loads
// them through the verifier, and removes them as it ends), and warm, a run while another one
// holds them (here a background `mcpwarden run -- sleep`, as an agent or any running sandbox
// would).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_common.h"

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

// Prints medians of interleaved runs of the sandboxed command and of the baseline.
double report(const char* label, const std::vector<double>& base, const std::vector<double>& sand) {
    const int runs = static_cast<int>(base.size());
    double mb = bench::median(base), ms = bench::median(sand);
    std::printf("  %-5s /bin/true alone  median %8.3f ms  p90 %8.3f ms  (%d runs)\n", label, mb / 1000,
                bench::percentile(base, 0.9) / 1000, runs);
    std::printf("  %-5s mcpwarden run    median %8.3f ms  p90 %8.3f ms  overhead %.3f ms  ratio %.1fx\n", label,
                ms / 1000, bench::percentile(sand, 0.9) / 1000, (ms - mb) / 1000, ms / mb);
    return ms;
}

// Prints one comparison of the sandboxed command against the baseline, interleaved.
double compare(const char* label, const std::vector<std::string>& baseline,
               const std::vector<std::string>& sandboxed, int runs) {
    std::vector<double> base, sand;
    for (int i = 0; i < runs; ++i) {
        base.push_back(run_once(baseline));
        sand.push_back(run_once(sandboxed));
    }
    return report(label, base, sand);
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
    std::string flags;
    for (const auto& e : extra) flags += " " + e;
    std::printf("benchmark: mcpwarden run%s -- /bin/true vs /bin/true\n", flags.c_str());

    // Cold: only when nothing else on the host holds the programs (each run then loads them).
    if (bench::programs_loaded()) {
        std::printf("  cold  not measured: another mcpwarden process holds the egress programs\n");
    } else {
        run_once(baseline);
        run_once(sandboxed);
        compare("cold", baseline, sandboxed, std::min(runs, 20));
    }

    // Warm: a background sandbox holds the programs while the measured runs come and go.
    double ms;
    const std::vector<std::string> bwrap{"/usr/bin/bwrap", "--unshare-all", "--new-session", "--die-with-parent",
                                         "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                         "--tmpfs", "/tmp", "/bin/true"};
    const bool have_bwrap = ::access(bwrap[0].c_str(), X_OK) == 0;
    {
        bench::WarmHolder holder(warden);
        for (int i = 0; i < 5; ++i) {  // page cache, state directories
            run_once(baseline);
            run_once(sandboxed);
            if (have_bwrap) run_once(bwrap);
        }
        std::vector<double> base, sand, bw;
        for (int i = 0; i < runs; ++i) {
            base.push_back(run_once(baseline));
            sand.push_back(run_once(sandboxed));
            if (have_bwrap) bw.push_back(run_once(bwrap));
        }
        ms = report("warm", base, sand);
        if (have_bwrap) {
            double mb = bench::median(bw);
            std::printf("  warm  bwrap --unshare-all  median %8.3f ms  p90 %8.3f ms  mcpwarden/bwrap %.2fx\n",
                        mb / 1000, bench::percentile(bw, 0.9) / 1000, ms / mb);
            std::printf("  goal: warm run median <= bwrap's: %s\n", ms <= mb ? "met" : "NOT met");
        } else {
            std::printf("  bwrap not installed (scripts/setup.sh installs bubblewrap): not compared\n");
        }
    }
    std::printf("  goal: warm run median <= 4 ms: %s\n", ms <= 4000 ? "met" : "NOT met");
    return 0;
}
