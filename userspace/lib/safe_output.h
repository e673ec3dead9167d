// SPDX-License-Identifier: Apache-2.0
// Files root writes at a path a user named (--report, --audit): opened once, before the server
// starts, so that nothing the server does later (a link planted where the file will be, a
// file swapped in) can redirect root's write. docs/security.md, "Files mcpwarden writes".
#pragma once

#include <string>

#include "fd.h"

namespace mcpwarden {

enum class OutputMode { truncate, append };

// Opens `path` for writing without following a link at its last component (O_NOFOLLOW) and
// without truncating a file before it was checked. Refused (Error(usage), the message says why
// and what to do), with nothing created or changed:
// - a directory writable by group or others, unless it is sticky (/tmp) and the file is new
//   or our own (root's, when root writes);
// - a directory owned by a user other than root and the invoking user (SUDO_UID, else the
//   real uid): a sandbox's user could plant links there;
// - anything but a regular file (a FIFO would block, a device is no report), a file with
//   other hard links, or one owned by someone other than root or the invoking user.
// A new file is created 0600. `what` names the flag in messages ("--report").
UniqueFd open_output(const std::string& path, OutputMode mode, const std::string& what);

}  // namespace mcpwarden
