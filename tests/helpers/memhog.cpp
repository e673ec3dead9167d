// SPDX-License-Identifier: Apache-2.0
// Allocates and touches memory in 1 MiB steps until it has argv[1] MiB (or is killed).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
    long mb = argc > 1 ? std::atol(argv[1]) : 1024;
    std::vector<char*> blocks;
    for (long i = 0; i < mb; ++i) {
        char* p = static_cast<char*>(std::malloc(1 << 20));
        if (!p) return 3;
        std::memset(p, 1, 1 << 20);
        blocks.push_back(p);
    }
    std::printf("allocated %ld MiB\n", mb);
    return 0;
}
