// SPDX-License-Identifier: Apache-2.0
// Owning file descriptor.
#pragma once

#include <unistd.h>

#include <string>
#include <utility>

namespace mcpwarden {

class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// Small file helpers for kernel interface files (cgroupfs, procfs).
bool read_file(const std::string& path, std::string& out);
bool write_file(const std::string& path, const std::string& text, int* err = nullptr);
bool write_all(int fd, const void* data, size_t len);

}  // namespace mcpwarden
