// SPDX-License-Identifier: Apache-2.0
// Benchmark: reading and compiling a large policy (issue 3: "a policy with 100,000 rules loads
// in well under a second"). Writes a policy of N /32 allow rules with ports (the file of
// docs/performance.md), then times load_policy_file and compile_egress, each RUNS times, and
// prints medians of wall-clock and CPU time. Needs no privileges.
//
//   bench_policy [RULES=100000] [RUNS=7]
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "egress_compiler.h"
#include "policy.h"

using namespace mcpwarden;

#include "bench_common.h"

namespace {

double cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

double wall_ms() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// The same file as the generator in docs/performance.md.
std::string write_policy(int rules) {
    std::string path = std::filesystem::temp_directory_path().string() + "/bench-policy-" +
                       std::to_string(getpid()) + ".yaml";
    std::ofstream out(path);
    out << "name: big\negress:\n  allow:\n    - cidr: 127.0.0.2/32\n";
    for (int i = 1; i < rules; ++i) {
        unsigned a = 0x0b000000u + static_cast<unsigned>(i) * 3;
        out << "    - cidr: " << (a >> 24) << "." << ((a >> 16) & 255) << "." << ((a >> 8) & 255)
            << "." << (a & 255) << "/32\n      ports: [443]\n";
    }
    return path;
}

}  // namespace

int main(int argc, char** argv) {
    int rules = argc > 1 ? std::atoi(argv[1]) : 100000;
    int runs = argc > 2 ? std::atoi(argv[2]) : 7;
    if (rules < 1 || runs < 1) {
        std::fprintf(stderr, "usage: bench_policy [RULES] [RUNS]\n");
        return 64;
    }
    std::string path = write_policy(rules);
    std::vector<double> load_wall, load_cpu, compile_wall, compile_cpu;
    for (int i = 0; i < runs; ++i) {
        double w0 = wall_ms(), c0 = cpu_ms();
        Policy p = load_policy_file(path);
        double w1 = wall_ms(), c1 = cpu_ms();
        CompiledEgress compiled = compile_egress(p.egress, 1);
        double w2 = wall_ms(), c2 = cpu_ms();
        load_wall.push_back(w1 - w0);
        load_cpu.push_back(c1 - c0);
        compile_wall.push_back(w2 - w1);
        compile_cpu.push_back(c2 - c1);
        if (p.egress.allow.size() != static_cast<std::size_t>(rules)) {
            std::fprintf(stderr, "bench_policy: read %zu rules, expected %d\n",
                         p.egress.allow.size(), rules);
            return 1;
        }
    }
    std::filesystem::remove(path);
    std::printf("policy of %d rules (%d runs, medians)\n", rules, runs);
    std::printf("  load_policy_file  %8.1f ms wall  %8.1f ms CPU\n", bench::median(load_wall),
                bench::median(load_cpu));
    std::printf("  compile_egress    %8.1f ms wall  %8.1f ms CPU\n", bench::median(compile_wall),
                bench::median(compile_cpu));
    return 0;
}
