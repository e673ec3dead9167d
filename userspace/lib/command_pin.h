// SPDX-License-Identifier: Apache-2.0
// A policy's `command:` (policy.h, CommandPin) and the secrets it guards: whether a command is
// the one a policy is for, and whether a policy hands secrets to whatever command is asked.
#pragma once

#include <string>
#include <vector>

#include "policy.h"

namespace mcpwarden {

// Whether `argv` is allowed by `pin` (an unpinned policy allows every command). argv[0] must
// be the pinned word itself, or name the same file (`pinned_program`, `program`: the files the
// two run, links resolved; "" when unknown) under the same last component ("/bin/sh" for
// "sh"); `why` says what differs.
bool command_matches(const CommandPin& pin, const std::vector<std::string>& argv, const std::string& pinned_program,
                     const std::string& program, std::string* why);

// Throws Error(forbidden) when the policy pins its command and `argv` is not it.
void check_command_pin(const Policy& policy, const std::vector<std::string>& argv);

// The secrets a policy hands its server: env.set values read from files, and variables with
// token-looking names (*TOKEN*, *KEY*, *SECRET*, *PASSWORD*, any case) it passes or sets.
// As "NAME (from FILE)" / "NAME (passed)" / "NAME (set)".
std::vector<std::string> policy_secrets(const Policy& policy);

// policy validate's warning for a policy with secrets and no `command:` ("" = none).
std::string unpinned_secrets_warning(const Policy& policy);

}  // namespace mcpwarden
