// SPDX-License-Identifier: Apache-2.0
// What a server sharing the host with other sandboxes could try with SysV IPC and pathname
// Unix sockets (tests/kernel/isolation_fs_test.cpp, bypass_isolation_fs_test.cpp). Prints one
// word per attempt: "created", "found", "listening", "accepted", or the errno's name.
//
//   fsprobe shm-create KEY    a SysV segment (0666) with KEY; held until stdin ends, then removed
//   fsprobe shm-get KEY       look the segment KEY up
//   fsprobe unix-listen PATH  a listening socket (0777) at PATH, "accepted" per connection,
//                             until stdin ends; then unlinked
#include <poll.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::string errno_name(int e) {
    switch (e) {
        case ENOENT: return "ENOENT";
        case EACCES: return "EACCES";
        case EPERM: return "EPERM";
        case EROFS: return "EROFS";
        case EEXIST: return "EEXIST";
        case EINVAL: return "EINVAL";
        case ECONNREFUSED: return "ECONNREFUSED";
        case EADDRINUSE: return "EADDRINUSE";
    }
    return "errno " + std::to_string(e);
}

void say(const std::string& word) {
    std::printf("%s\n", word.c_str());
    std::fflush(stdout);
}

void wait_for_stdin_end() {
    char buf[256];
    while (::read(0, buf, sizeof buf) > 0) {
    }
}

int shm_create(key_t key) {
    int id = ::shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0666);
    if (id < 0) {
        say(errno_name(errno));
        return 1;
    }
    say("created");
    wait_for_stdin_end();
    ::shmctl(id, IPC_RMID, nullptr);
    return 0;
}

int shm_get(key_t key) {
    say(::shmget(key, 0, 0) >= 0 ? "found" : errno_name(errno));
    return 0;
}

int unix_listen(const char* path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0) {
        say(errno_name(errno));
        return 1;
    }
    ::chmod(path, 0777);
    say("listening");
    for (;;) {
        pollfd fds[2] = {{0, POLLIN, 0}, {fd, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents & POLLIN) {
            int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0) {
                say("accepted");
                ::close(c);
            }
        }
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char buf[256];
            if (::read(0, buf, sizeof buf) <= 0) break;
        }
    }
    ::unlink(path);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string verb = argc > 1 ? argv[1] : "";
    if (verb == "shm-create" && argc == 3) return shm_create(static_cast<key_t>(std::strtol(argv[2], nullptr, 0)));
    if (verb == "shm-get" && argc == 3) return shm_get(static_cast<key_t>(std::strtol(argv[2], nullptr, 0)));
    if (verb == "unix-listen" && argc == 3) return unix_listen(argv[2]);
    std::fprintf(stderr, "usage: fsprobe shm-create KEY | shm-get KEY | unix-listen PATH\n");
    return 2;
}
