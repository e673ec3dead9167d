// SPDX-License-Identifier: Apache-2.0
// Helpers of the policy parser's tests: a policy text expected to fail, and one error of it
// expected at a position.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "error.h"
#include "policy.h"

namespace policytest {

// Parses text expecting failure; returns the error list.
inline nlohmann::json errors_of(const std::string& text) {
    try {
        mcpwarden::parse_policy(text, "p.yaml");
    } catch (const mcpwarden::Error& e) {
        EXPECT_EQ(e.kind(), mcpwarden::ErrorKind::policy_invalid);
        return e.details()["errors"];
    }
    ADD_FAILURE() << "policy was accepted:\n" << text;
    return nlohmann::json::array();
}

inline void expect_error_at(const std::string& text, int line, int column, const std::string& fragment) {
    auto errors = errors_of(text);
    ASSERT_FALSE(errors.empty());
    bool found = false;
    for (const auto& e : errors) {
        if (e["line"] == line && e["column"] == column &&
            e["message"].get<std::string>().find(fragment) != std::string::npos)
            found = true;
    }
    EXPECT_TRUE(found) << "expected p.yaml:" << line << ":" << column << " '" << fragment
                       << "', got " << errors.dump(2);
}

}  // namespace policytest
