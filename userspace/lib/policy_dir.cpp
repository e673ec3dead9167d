// SPDX-License-Identifier: Apache-2.0
#include "policy_dir.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "error.h"

namespace mcpwarden {
namespace fs = std::filesystem;

namespace {

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::exists(p, ec) && !fs::is_directory(p, ec);
}

// The source directory a CMake build directory was configured from.
std::string source_dir_of_build(const fs::path& build_dir) {
    std::ifstream in(build_dir / "CMakeCache.txt");
    std::string line;
    for (const std::string key : {"mcpwarden_SOURCE_DIR:STATIC=", "CMAKE_HOME_DIRECTORY:INTERNAL="}) {
        in.clear();
        in.seekg(0);
        while (std::getline(in, line)) {
            if (line.rfind(key, 0) == 0) return line.substr(key.size());
        }
    }
    return "";
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::string default_policy_dir(const std::string& exe_path) {
    if (!exe_path.empty()) {
        fs::path build = fs::path(exe_path).parent_path().parent_path();  // <build>/bin/exe
        if (is_file(build / "CMakeCache.txt")) {
            std::string source = source_dir_of_build(build);
            if (!source.empty() && is_dir(fs::path(source) / "policies"))
                return (fs::path(source) / "policies").string();
            fs::path beside = build.parent_path() / "policies";
            if (is_dir(beside)) return beside.lexically_normal().string();
        }
    }
    return kInstalledPolicyDir;
}

std::string default_policy_dir() {
    // Once per process: several subcommands' help texts name it, and in a build tree finding it
    // reads CMakeCache.txt.
    static const std::string dir = [] {
        std::error_code ec;
        auto exe = fs::read_symlink("/proc/self/exe", ec);
        return default_policy_dir(ec ? std::string() : exe.string());
    }();
    return dir;
}

bool is_policy_path(std::string_view ref) {
    return ref.find('/') != std::string_view::npos || ends_with(ref, ".yaml") ||
           ends_with(ref, ".yml");
}

std::vector<std::string> policy_names(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        auto p = it->path();
        if (p.extension() == ".yaml" && valid_policy_name(p.stem().string()))
            out.push_back(p.stem().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string resolve_policy(const std::string& ref, const std::string& dir_arg) {
    if (ref.empty()) throw Error(ErrorKind::usage, "empty policy name");
    if (is_policy_path(ref)) {
        if (!is_file(ref))
            throw Error(ErrorKind::usage, "policy file " + ref + " does not exist",
                        {{"file", ref}});
        return ref;
    }
    std::string dir = dir_arg.empty() ? default_policy_dir() : dir_arg;
    if (!valid_policy_name(ref))
        throw Error(ErrorKind::usage,
                    "'" + ref + "' is neither a policy file (a path, or a name ending in .yaml) "
                    "nor a policy name (letters, digits, '-', '_', '.')");
    std::string path = (fs::path(dir) / (ref + ".yaml")).string();
    if (is_file(path)) return path;
    std::string message = "no policy named '" + ref + "': " + path + " does not exist";
    if (!is_dir(dir)) {
        message += " (the policy directory " + dir + " does not exist; choose one with --policy-dir)";
    } else {
        auto names = policy_names(dir);
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        message += names.empty() ? " (" + dir + " holds no policies)"
                                 : " (policies in " + dir + ": " + list + ")";
    }
    throw Error(ErrorKind::usage, message, {{"file", path}, {"policy_dir", dir}});
}

Policy load_policy_ref(const std::string& ref, const std::string& dir) {
    return load_policy_file(resolve_policy(ref, dir));
}

}  // namespace mcpwarden
