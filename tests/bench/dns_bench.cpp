// SPDX-License-Identifier: Apache-2.0
// Benchmark: DNS through mcpwarden's resolver (a sandbox querying any address on port 53,
// redirected by the kernel; the resolver checks the name, forwards upstream, admits the answer
// into the allow-list, releases it) against querying the same upstream directly, in one run.
// Prints median latency, p99, lost queries and queries per second, for queries sent one at a
// time (the added latency), paced at 10,000/s (loss) and as fast as 64 in flight allow; not a
// test.
//
//   bench_dns BUILD_BIN_DIR [QUERIES]
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"

namespace {

struct Figures {
    double median_us = 0, p99_us = 0, lost = 0, qps = 0;
};

Figures parse(const std::string& s) {
    Figures f;
    std::istringstream in(s);
    in >> f.median_us >> f.p99_us >> f.lost >> f.qps;
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bin = argc > 1 ? argv[1] : "build/bin";
    std::string count = argc > 2 ? argv[2] : "20000";
    char tmpl[] = "/tmp/mcpwarden-dnsbench-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    chmod(dir.c_str(), 0755);
    std::string probe = dir + "/netprobe";
    bench::run_capture({"/bin/cp", bin + "/netprobe", probe});
    chmod(probe.c_str(), 0755);
    std::string policy = dir + "/dnsbench.yaml";
    std::ofstream(policy) << "name: dnsbench\negress:\n  allow:\n    - host: bench.test\n      ports: [443]\n"
                          << "dns:\n  upstream: [\"127.0.0.163:5355\"]\n  allow_reserved_answers: true\n";
    pid_t stub = fork();
    if (stub == 0) {
        int devnull = open("/dev/null", 1);
        dup2(devnull, 1);
        execl((bin + "/dnsstub").c_str(), "dnsstub", "127.0.0.163", "5355", "300", "bench.test=127.0.0.7", nullptr);
        _exit(127);
    }
    usleep(200000);
    std::string warden = bin + "/mcpwarden";
    auto direct = [&](const std::string& rate) { return parse(bench::run_capture({probe, "dns-load", "127.0.0.163", "5355", "bench.test", count, rate})); };
    auto through = [&](const std::string& rate) {
        return parse(bench::run_capture({warden, "run", "--state-dir", dir, "--policy", policy, "--", probe, "dns-load", "10.9.9.9", "53",
                                  "bench.test", count, rate}));
    };
    std::printf("benchmark: DNS A queries, %s per measurement (latency in microseconds)\n", count.c_str());
    for (const std::string rate : {"-1", "10000", "0"}) {
        Figures d = direct(rate), w = through(rate);
        Figures d2 = direct(rate), w2 = through(rate);  // interleaved twice; the better of each
        if (d2.median_us < d.median_us) d = d2;
        if (w2.median_us < w.median_us) w = w2;
        std::string label = rate == "0" ? "max rate (64 in flight)" : rate == "-1" ? "one at a time" : rate + " queries/s";
        std::printf("  %-24s direct:   median %6.1f  p99 %7.1f  lost %4.0f  %7.0f q/s\n", label.c_str(), d.median_us, d.p99_us, d.lost, d.qps);
        std::printf("  %-24s mcpwarden: median %6.1f  p99 %7.1f  lost %4.0f  %7.0f q/s  (+%.1f us median)\n", "", w.median_us, w.p99_us,
                    w.lost, w.qps, w.median_us - d.median_us);
    }
    kill(stub, SIGKILL);
    waitpid(stub, nullptr, 0);
    bench::run_capture({"/bin/rm", "-rf", dir});
    return 0;
}
