// SPDX-License-Identifier: Apache-2.0
#include "command_pin.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstdlib>
#include <cctype>

#include "error.h"
#include "process.h"
#include "sandbox.h"

namespace mcpwarden {
namespace {

std::string words(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& w : v) out += (out.empty() ? "" : " ") + w;
    return out;
}

bool token_like(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::toupper(ch); });
    for (const char* part : {"TOKEN", "KEY", "SECRET", "PASSWORD"}) {
        if (name.find(part) != std::string::npos) return true;
    }
    return false;
}

std::string base_name(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The file a command word runs (on the sandbox's PATH), links resolved; "" when none.
std::string program_file(const std::string& word) {
    try {
        std::string exe = resolve_executable(word, kSandboxPath);
        char* real = ::realpath(exe.c_str(), nullptr);
        std::string out = real ? real : "";
        ::free(real);
        return out;
    } catch (const Error&) {
        return "";
    }
}

}  // namespace

bool command_matches(const CommandPin& pin, const std::vector<std::string>& argv, const std::string& pinned_program,
                     const std::string& program, std::string* why) {
    if (!pin.pinned()) return true;
    auto say = [&](const std::string& text) {
        if (why) *why = text;
        return false;
    };
    if (argv.empty()) return say("no command given");
    // The same file under another name is another program to a multi-call binary (busybox
    // acts by argv[0]'s last component): the names must agree too.
    bool same = argv[0] == pin.argv[0] ||
                (!pinned_program.empty() && pinned_program == program && base_name(argv[0]) == base_name(pin.argv[0]));
    if (!same) return say("the program is " + argv[0] + ", not " + pin.argv[0]);
    if (argv.size() < pin.argv.size()) return say("it lacks the arguments after " + words(argv));
    for (size_t i = 1; i < pin.argv.size(); ++i) {
        if (argv[i] != pin.argv[i]) return say("argument " + std::to_string(i) + " is '" + argv[i] + "', not '" + pin.argv[i] + "'");
    }
    for (size_t i = pin.argv.size(); i < argv.size(); ++i) {
        if (!pin.prefix) return say("it has arguments after " + words(pin.argv) + " ('" + argv[i] + "')");
        bool ok = std::any_of(pin.args.begin(), pin.args.end(),
                              [&](const std::string& g) { return ::fnmatch(g.c_str(), argv[i].c_str(), 0) == 0; });
        if (!ok) return say("argument '" + argv[i] + "' matches none of command.args");
    }
    return true;
}

void check_command_pin(const Policy& policy, const std::vector<std::string>& argv) {
    if (!policy.command.pinned()) return;
    std::string why = "no command given";
    if (!argv.empty() && command_matches(policy.command, argv, program_file(policy.command.argv[0]),
                                         argv[0] == policy.command.argv[0] ? "" : program_file(argv[0]), &why))
        return;
    throw Error(ErrorKind::forbidden,
                "policy " + policy.name + " runs only `" + words(policy.command.argv) +
                    (policy.command.prefix ? " ...`" : "`") + " (its command: at " + policy.command.where.to_string() +
                    "), and this command differs: " + why,
                {{"policy", policy.name}, {"command", argv}, {"pinned", policy.command.argv}});
}

std::vector<std::string> policy_secrets(const Policy& policy) {
    std::vector<std::string> out;
    for (const auto& name : policy.env.pass) {
        if (token_like(name)) out.push_back(name + " (passed)");
    }
    for (const auto& [name, value] : policy.env.set) {
        if (value.file) out.push_back(name + " (from " + *value.file + ")");
        else if (token_like(name)) out.push_back(name + " (set)");
    }
    return out;
}

std::string unpinned_secrets_warning(const Policy& policy) {
    if (policy.command.pinned()) return "";
    auto secrets = policy_secrets(policy);
    if (secrets.empty()) return "";
    std::string list;
    for (const auto& s : secrets) list += (list.empty() ? "" : ", ") + s;
    return "the policy hands secrets to its server (" + list +
           ") but does not pin its command: whoever may use the policy can run any program with them "
           "(`-- /usr/bin/env` prints them); add command: [the server's argv]. The agent refuses such a "
           "policy for clients unless its configuration sets allow_unpinned_secrets: true";
}

}  // namespace mcpwarden
