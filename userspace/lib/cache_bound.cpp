// SPDX-License-Identifier: Apache-2.0
#include "cache_bound.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <vector>

#include <spdlog/spdlog.h>

#include "error.h"
#include "fd.h"
#include "units.h"

namespace mcpwarden {
namespace {

struct Entry {
    std::string name;
    struct stat st;
};

// The entries of the directory `fd` (not . and ..), each lstat'ed relative to it.
std::vector<Entry> entries_of(int fd) {
    std::vector<Entry> out;
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return out;
    DIR* d = ::fdopendir(copy);
    if (!d) {
        ::close(copy);
        return out;
    }
    // The copy shares the offset of `fd`, which an earlier pass left at the end.
    ::rewinddir(d);
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n == "." || n == "..") continue;
        Entry entry{n, {}};
        if (::fstatat(fd, n.c_str(), &entry.st, AT_SYMLINK_NOFOLLOW) == 0) out.push_back(std::move(entry));
    }
    ::closedir(d);
    return out;
}

std::int64_t last_used(const struct stat& st) {
    auto ns = [](const timespec& t) { return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; };
    return std::max(ns(st.st_atim), ns(st.st_mtim));
}

// Calls fn(dirfd, entry) for every entry below `fd` that is not a directory; directories are
// entered (on the same filesystem only) through openat(O_NOFOLLOW).
void walk(int fd, dev_t dev, int depth, const std::function<void(int, const Entry&)>& fn) {
    if (depth > 64) return;  // deeper than any package cache: not followed
    for (const auto& e : entries_of(fd)) {
        if (S_ISDIR(e.st.st_mode)) {
            if (e.st.st_dev != dev) continue;
            UniqueFd sub(::openat(fd, e.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub) walk(sub.get(), dev, depth + 1, fn);
        } else {
            fn(fd, e);
        }
    }
}

UniqueFd open_cache(const std::string& dir, dev_t* dev) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) return UniqueFd();
    *dev = st.st_dev;
    return fd;
}

std::uint64_t disk_bytes(const struct stat& st) { return static_cast<std::uint64_t>(st.st_blocks) * 512; }

}  // namespace

CacheUsage cache_usage(const std::string& dir) {
    CacheUsage u;
    dev_t dev = 0;
    UniqueFd fd = open_cache(dir, &dev);
    if (!fd) return u;
    walk(fd.get(), dev, 0, [&](int, const Entry& e) {
        u.bytes += disk_bytes(e.st);
        u.files += S_ISREG(e.st.st_mode);
    });
    return u;
}

CacheUsage trim_cache(const std::string& dir, std::uint64_t max_bytes) {
    dev_t dev = 0;
    UniqueFd fd = open_cache(dir, &dev);
    if (!fd) return {};
    // First pass: what is there, by last use; the cut-off is the newest time that must go.
    std::vector<std::pair<std::int64_t, std::uint64_t>> files;
    std::uint64_t total = 0;
    walk(fd.get(), dev, 0, [&](int, const Entry& e) {
        files.emplace_back(last_used(e.st), disk_bytes(e.st));
        total += disk_bytes(e.st);
    });
    if (total <= max_bytes) return cache_usage(dir);
    std::sort(files.begin(), files.end());
    std::int64_t cutoff = 0;
    std::uint64_t left = total;
    for (const auto& [t, size] : files) {
        if (left <= max_bytes) break;
        left -= size;
        cutoff = t;
    }
    // Second pass: unlink, relative to the directory read, what was used at or before it.
    walk(fd.get(), dev, 0, [&](int dirfd, const Entry& e) {
        if (last_used(e.st) <= cutoff) ::unlinkat(dirfd, e.name.c_str(), 0);
    });
    return cache_usage(dir);
}

void enforce_cache_bound(const CachePolicy& policy, const std::string& dir, bool at_start, nlohmann::json& report) {
    std::uint64_t max = policy.max_size.value_or(CachePolicy::kDefaultMaxSize);
    CacheUsage before = cache_usage(dir);
    CacheUsage after = before;
    if (before.bytes > max) {
        if (policy.on_full == CachePolicy::OnFull::refuse) {
            if (at_start) {
                throw Error(ErrorKind::sandbox_unavailable,
                            "the persistent cache " + dir + " holds " + format_size(before.bytes) + ", over its cache.max_size of " +
                                format_size(max) + " (cache.on_full: refuse); empty it (rm -rf " + dir +
                                "/*) or raise cache.max_size",
                            {{"limit_name", "cache.max_size"}, {"limit", max}, {"observed", before.bytes}});
            }
            spdlog::warn("the persistent cache {} holds {}, over its cache.max_size of {}: the next run is refused",
                         dir, format_size(before.bytes), format_size(max));
        } else {
            after = trim_cache(dir, max);
            spdlog::info("the persistent cache {} held {}, over its cache.max_size of {}: trimmed to {} (least recently used first)",
                         dir, format_size(before.bytes), format_size(max), format_size(after.bytes));
        }
    }
    auto& j = report["cache"];
    if (!j.is_object()) j = nlohmann::json::object();
    j["max_size"] = max;
    j["bytes"] = after.bytes;
    j["files"] = after.files;
    std::uint64_t trimmed = before.bytes > after.bytes ? before.bytes - after.bytes : 0;
    j["trimmed_bytes"] = j.value("trimmed_bytes", std::uint64_t{0}) + trimmed;
}

}  // namespace mcpwarden
