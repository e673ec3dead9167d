// SPDX-License-Identifier: Apache-2.0
// docs/api.md against the code: every op the agent serves is in the list of ops near the top
// and has a section of its own.
#include <gtest/gtest.h>

#include <string>

#include "agent_protocol.h"
#include "fd.h"

TEST(ApiDoc, EveryOpIsListedAndDocumented) {
    std::string doc;
    ASSERT_TRUE(mcpwarden::read_file(std::string(MCPWARDEN_SOURCE_DIR) + "/docs/api.md", doc));
    auto at = doc.find("- `op` (string, required):");
    ASSERT_NE(at, std::string::npos);
    std::string list = doc.substr(at, doc.find("\n- ", at + 1) - at);
    for (const auto& op : mcpwarden::api_ops()) {
        EXPECT_NE(list.find("`" + op.name + "`"), std::string::npos) << op.name << " missing from: " << list;
        bool section = false;
        for (auto h = doc.find("\n### "); h != std::string::npos && !section; h = doc.find("\n### ", h + 1))
            section = doc.substr(h, doc.find('\n', h + 1) - h).find("`" + op.name + "`") != std::string::npos;
        EXPECT_TRUE(section) << op.name << " has no section";
    }
}
