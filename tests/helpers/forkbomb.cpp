// SPDX-License-Identifier: Apache-2.0
// Forks without end: every process keeps forking, and retries when the kernel refuses.
#include <unistd.h>

int main() {
    for (;;) {
        if (fork() < 0) usleep(1000);
    }
}
