// SPDX-License-Identifier: Apache-2.0
// Benchmark: connect()+close() to a loopback listener from inside a sandbox whose policy has
// 10, 1,000 and 100,000 rules, against the same loop unconfined, interleaved in one run; and
// the cost of loading a policy into a sandbox (warm `run -- /bin/true` with each policy).
// Prints medians and ratios; not a test.
//
//   bench_egress BUILD_BIN_DIR [ROUNDS] [CONNECTS_PER_ROUND]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"

namespace {

double wall_ms(const std::vector<std::string>& argv) {
    auto t0 = std::chrono::steady_clock::now();
    bench::run_capture(argv);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string write_policy(const std::string& dir, int rules) {
    std::string path = dir + "/bench-" + std::to_string(rules) + ".yaml";
    std::ofstream out(path);
    out << "name: bench-" << rules << "\negress:\n  allow:\n    - cidr: 127.0.0.2/32\n";
    for (int i = 1; i < rules; ++i) {
        std::uint32_t a = 0x0b000000u + static_cast<std::uint32_t>(i) * 3;
        out << "    - cidr: " << (a >> 24) << "." << ((a >> 16) & 255) << "." << ((a >> 8) & 255) << "." << (a & 255)
            << "/32\n      ports: [443]\n";
    }
    return path;
}

}  // namespace

int main(int argc, char** argv) {
    std::string bin = argc > 1 ? argv[1] : "build/bin";
    int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
    int per_round = argc > 3 ? std::atoi(argv[3]) : 2000;
    char tmpl[] = "/tmp/mcpwarden-bench-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    chmod(dir.c_str(), 0755);
    // The sandbox user must be able to execute netprobe.
    std::string probe = dir + "/netprobe";
    bench::run_capture({"/bin/cp", bin + "/netprobe", probe});
    chmod(probe.c_str(), 0755);
    std::string warden = bin + "/mcpwarden";

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    listen(lfd, 4096);
    socklen_t len = sizeof sa;
    getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len);
    std::string port = std::to_string(ntohs(sa.sin_port));
    std::atomic<bool> stop{false};
    std::thread acceptor([&] {
        while (!stop) {
            pollfd p{lfd, POLLIN, 0};
            if (poll(&p, 1, 50) > 0) {
                int c = accept(lfd, nullptr, nullptr);
                if (c >= 0) close(c);
            }
        }
    });

    std::vector<int> sizes{10, 1000, 100000};
    std::vector<std::string> policies;
    for (int n : sizes) policies.push_back(write_policy(dir, n));
    std::string loop_n = std::to_string(per_round);

    std::vector<double> base;
    std::vector<std::vector<double>> sand(sizes.size());
    for (int r = 0; r < rounds; ++r) {
        base.push_back(std::stod(bench::run_capture({probe, "connect-loop", "127.0.0.2", port, loop_n})));
        for (size_t i = 0; i < sizes.size(); ++i) {
            std::string out = bench::run_capture({warden, "run", "--state-dir", dir, "--policy", policies[i], "--", probe,
                                           "connect-loop", "127.0.0.2", port, loop_n});
            sand[i].push_back(std::stod(out));
        }
    }
    double mb = bench::median(base);
    std::printf("benchmark: connect()+close() to 127.0.0.2 (median ns per pair; %d rounds x %d connects)\n", rounds, per_round);
    std::printf("  unconfined                 %8.0f ns\n", mb);
    for (size_t i = 0; i < sizes.size(); ++i) {
        double m = bench::median(sand[i]);
        std::printf("  sandbox, %6d rules       %8.0f ns   ratio %.3f  (%+.1f%%)\n", sizes[i], m, m / mb, (m / mb - 1) * 100);
    }

    // Policy load: warm `run -- /bin/true` without and with each policy.
    std::vector<double> plain, with[3];
    bench::WarmHolder holder(warden);
    for (int r = 0; r < 15; ++r) {
        plain.push_back(wall_ms({warden, "run", "--state-dir", dir, "--", "/bin/true"}));
        for (size_t i = 0; i < sizes.size(); ++i)
            with[i].push_back(wall_ms({warden, "run", "--state-dir", dir, "--policy", policies[i], "--", "/bin/true"}));
    }
    std::printf("benchmark: warm mcpwarden run -- /bin/true (median of 15)\n");
    std::printf("  no policy (default deny)   %8.2f ms\n", bench::median(plain));
    for (size_t i = 0; i < sizes.size(); ++i)
        std::printf("  policy of %6d rules      %8.2f ms   (+%.2f ms to parse, compile, load and remove)\n", sizes[i],
                    bench::median(with[i]), bench::median(with[i]) - bench::median(plain));
    stop = true;
    acceptor.join();
    bench::run_capture({"/bin/rm", "-rf", dir});
    return 0;
}
