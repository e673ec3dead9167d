// SPDX-License-Identifier: Apache-2.0
#include "safe_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "error.h"

namespace mcpwarden {
namespace {

// The user who asked for the file: under sudo the one sudo ran for, else the real uid.
uid_t invoking_uid() {
    if (const char* s = std::getenv("SUDO_UID"); s && *s) {
        char* end = nullptr;
        unsigned long v = std::strtoul(s, &end, 10);
        if (end && *end == '\0' && v < 4294967295UL) return static_cast<uid_t>(v);
    }
    return ::getuid();
}

bool trusted_owner(uid_t uid) { return uid == 0 || uid == ::geteuid() || uid == invoking_uid(); }

}  // namespace

UniqueFd open_output(const std::string& path, OutputMode mode, const std::string& what) {
    auto refuse = [&](const std::string& why) -> Error {
        return Error(ErrorKind::usage,
                     what + " " + path + ": " + why +
                         "; name a file in a directory only root (or you) can write, such as /root or /var/log",
                     {{"file", path}});
    };
    if (path.empty() || path.back() == '/') throw refuse("not a file name");
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base == "." || base == "..") throw refuse("not a file name");
    // The checks below are of the directory the file lands in, whatever links led there.
    UniqueFd dirfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dirfd) throw Error(ErrorKind::usage, errno_text(what + " " + path + ": cannot open its directory", errno), {{"file", path}});
    struct stat d {};
    if (::fstat(dirfd.get(), &d) != 0) throw Error(ErrorKind::usage, errno_text(what + " " + path, errno), {{"file", path}});
    if (!trusted_owner(d.st_uid))
        throw refuse("its directory belongs to uid " + std::to_string(d.st_uid) +
                     ", who could replace the file with a link to one of root's");
    bool shared = (d.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (shared && !(d.st_mode & S_ISVTX))
        throw refuse("its directory is writable by other users (and not sticky): anyone could plant a link there");
    // O_NONBLOCK: a FIFO planted there must not hang us (it is refused below).
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                (mode == OutputMode::append ? O_APPEND : 0);
    UniqueFd fd(::openat(dirfd.get(), base.c_str(), flags, 0600));
    if (!fd) {
        int err = errno;
        if (err == ELOOP) throw refuse("it is a symbolic link (root does not write through links)");
        if (err == ENXIO) throw refuse("it is a FIFO or socket, not a regular file");
        throw Error(ErrorKind::usage, errno_text(what + " " + path, err), {{"file", path}});
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw Error(ErrorKind::usage, errno_text(what + " " + path, errno), {{"file", path}});
    if (!S_ISREG(st.st_mode)) throw refuse("not a regular file");
    if (st.st_nlink > 1) throw refuse("it has other hard links (it may be another file under a second name)");
    // In a directory others write, only a file of our own (root's, when root writes) is ours.
    if (shared ? st.st_uid != ::geteuid() : !trusted_owner(st.st_uid))
        throw refuse("the file belongs to uid " + std::to_string(st.st_uid) +
                     (shared ? " in a directory others can write: it may have been planted" : ""));
    int fl = ::fcntl(fd.get(), F_GETFL);
    if (fl >= 0) ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    if (mode == OutputMode::truncate && st.st_size > 0 && ::ftruncate(fd.get(), 0) != 0)
        throw Error(ErrorKind::usage, errno_text(what + " " + path + ": cannot truncate", errno), {{"file", path}});
    return fd;
}

}  // namespace mcpwarden
