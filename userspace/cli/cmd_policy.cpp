// SPDX-License-Identifier: Apache-2.0
// mcpwarden policy validate|explain|show: write and check policies without running anything.
#include <iostream>

#include "commands.h"
#include "error.h"
#include "exit_codes.h"
#include "policy_dir.h"
#include "policy_inspect.h"

namespace mcpwarden {
namespace {

using json = nlohmann::json;

constexpr int kInvalid = 1;  // validate: some file has errors; explain: denied

std::string policy_dir_help() {
    return "Directory that policy names resolve in: NAME means DIR/NAME.yaml (default: the "
           "checkout's policies/ when mcpwarden runs from a build tree, else " +
           std::string(kInstalledPolicyDir) + "; here: " + default_policy_dir() + ")";
}

void print_errors(const PolicyCheck& check) {
    for (const auto& d : check.errors) std::cerr << d.to_string(false) << "\n";
}

// Resolves and parses a policy for explain and show; prints every error and returns nullopt
// (exit 78) when it is invalid.
std::optional<Policy> load_for_use(const std::string& ref, const std::string& dir) {
    std::string path = resolve_policy(ref, dir);
    PolicyCheck check = check_policy_file(path);
    if (!check.ok()) {
        print_errors(check);
        return std::nullopt;
    }
    return check.policy;
}

class PolicyCommand : public Command {
public:
    void define(CLI::App& parent) override {
        app_ = parent.add_subcommand(
            "policy", "Check policies, see what they allow, and why (nothing is run, no root needed)");
        app_->require_subcommand(1);

        validate_ = app_->add_subcommand(
            "validate",
            "Check policy files: print every error as file:line:column: message, and warnings for "
            "rules that are duplicated, redundant, cancelled by a deny rule (deny wins), or too "
            "broad, for unknown users and for tool timeouts the tool filters make moot. Prints "
            "'FILE: ok (name)' for each valid file.");
        validate_->add_option("policy", validate_refs_, "Policy files, or names in the policy directory")
            ->required();
        validate_->add_flag("--strict", strict_, "Treat warnings as errors");
        validate_->add_flag("--json", validate_json_,
                            "Print one JSON array: {file, ok, name, errors, warnings} per policy");
        validate_->add_option("--policy-dir", dir_, policy_dir_help());
        validate_->footer("Exit status: 0 all valid, 1 any error (or warning with --strict), 64 usage error.");

        explain_ = app_->add_subcommand(
            "explain",
            "Say whether the policy lets the sandbox reach a destination, and which rule decides "
            "(or default deny, or a reserved range). An address is decided exactly as the kernel "
            "programs decide it; a host name by the policy's host rules (exact, or *.domain for "
            "one label), whose DNS answers are admitted on the rule's ports and protocol. With "
            "--path, say whether the server can read, write or not see a path of the host (the "
            "default view and the policy's filesystem section), and which rule decides.");
        explain_->add_option("policy", explain_ref_, "Policy file, or name in the policy directory")->required();
        explain_->add_option("--to", to_,
                             "HOST_OR_IP:PORT[/PROTO]: api.github.com:443, 10.0.0.1:53/udp, "
                             "[2001:db8::1]:443; the protocol is tcp unless /udp is given");
        auto* path = explain_->add_option("--path", path_, "An absolute path: readable, writable or hidden in the sandbox");
        path->excludes(explain_->get_option("--to"));
        explain_->get_option("--to")->excludes(path);
        explain_->add_flag("--json", explain_json_, "Print the verdict as JSON");
        explain_->add_option("--policy-dir", dir_, policy_dir_help());
        explain_->footer("Exit status: 0 allowed, 1 denied (with --path: 0 visible, 1 hidden), 64 usage error "
                         "(bad --to or --path, neither given, unknown policy), 78 invalid policy.");

        show_ = app_->add_subcommand(
            "show",
            "Print the normalised policy: limits in canonical units, rules merged per target and "
            "protocol with their port ranges united, and the defaults made explicit (default "
            "deny, reserved ranges, name resolution, MCP limits).");
        show_->add_option("policy", show_ref_, "Policy file, or name in the policy directory")->required();
        show_->add_flag("--json", show_json_, "Print JSON instead of text");
        show_->add_option("--policy-dir", dir_, policy_dir_help());
        show_->footer("Exit status: 0 shown, 64 usage error (unknown policy), 78 invalid policy.");
    }

    int execute() override {
        if (validate_->parsed()) return validate();
        if (explain_->parsed()) return explain_one();
        return show();
    }

private:
    int validate() {
        int status = 0;
        json out = json::array();
        for (const auto& ref : validate_refs_) {
            PolicyCheck check;
            try {
                check = check_policy_file(resolve_policy(ref, dir_));
            } catch (const Error& e) {
                check.file = e.details().value("file", ref);
                // A named object: GCC 12 at -O3 reports -Wmaybe-uninitialized for a braced
                // temporary here (a false positive).
                Diagnostic d;
                d.where.file = check.file;
                d.message = e.what();
                check.errors.push_back(std::move(d));
            }
            bool ok = check.ok() && !(strict_ && !check.warnings.empty());
            if (!ok) status = kInvalid;
            if (validate_json_) {
                json errors = json::array(), warnings = json::array();
                for (const auto& d : check.errors) errors.push_back(d.to_json());
                for (const auto& d : check.warnings) warnings.push_back(d.to_json());
                out.push_back({{"file", check.file},
                               {"ok", ok},
                               {"name", check.policy ? json(check.policy->name) : json(nullptr)},
                               {"errors", errors},
                               {"warnings", warnings}});
                continue;
            }
            print_errors(check);
            for (const auto& d : check.warnings) std::cerr << d.to_string(true) << "\n";
            if (ok) std::cout << check.file << ": ok (" << check.policy->name << ")\n";
            else if (check.ok()) std::cerr << check.file << ": warnings are errors with --strict\n";
        }
        if (validate_json_) std::cout << out.dump(2) << "\n";
        return status;
    }

    int explain_one() {
        if (!path_.empty()) return explain_path_one();
        if (to_.empty()) throw Error(ErrorKind::usage, "policy explain needs --to HOST:PORT or --path PATH");
        Destination to = parse_destination(to_);
        auto policy = load_for_use(explain_ref_, dir_);
        if (!policy) return exit_code::policy_invalid;
        Explanation x = explain(*policy, to);
        if (explain_json_) {
            json j = x.to_json();
            j["policy"] = policy->name;
            j["file"] = policy->source;
            j["destination"] = {{"host", to.address ? json(nullptr) : json(to.host)},
                                {"address", to.address ? json(to.address->to_string()) : json(nullptr)},
                                {"port", to.port},
                                {"protocol", std::string(to_string(to.protocol))}};
            std::cout << j.dump(2) << "\n";
        } else {
            std::cout << x.summary << "\n";
            for (const auto& n : x.notes) std::cout << "  note: " << n << "\n";
        }
        return x.allowed ? 0 : kInvalid;
    }

    int explain_path_one() {
        auto policy = load_for_use(explain_ref_, dir_);
        if (!policy) return exit_code::policy_invalid;
        PathExplanation x = explain_path(*policy, path_);
        if (explain_json_) {
            json j = x.to_json();
            j["policy"] = policy->name;
            j["file"] = policy->source;
            std::cout << j.dump(2) << "\n";
        } else {
            std::cout << x.summary << "\n";
        }
        return x.decision.readable() ? 0 : kInvalid;
    }

    int show() {
        auto policy = load_for_use(show_ref_, dir_);
        if (!policy) return exit_code::policy_invalid;
        if (show_json_) std::cout << normalised_policy_json(*policy).dump(2) << "\n";
        else std::cout << normalised_policy_text(*policy);
        return 0;
    }

    CLI::App* validate_ = nullptr;
    CLI::App* explain_ = nullptr;
    CLI::App* show_ = nullptr;
    std::vector<std::string> validate_refs_;
    std::string explain_ref_, show_ref_, to_, path_, dir_;
    bool strict_ = false, validate_json_ = false, explain_json_ = false, show_json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_policy_command() { return std::make_unique<PolicyCommand>(); }

}  // namespace mcpwarden
