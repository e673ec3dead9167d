// SPDX-License-Identifier: Apache-2.0
// Name matching of host rules: shared by `policy explain` and the DNS resolver.
#include <gtest/gtest.h>

#include "host_match.h"

using mcpwarden::host_matches;

TEST(HostMatch, ExactNameMatchesItselfOnly) {
    EXPECT_TRUE(host_matches("api.github.com", "api.github.com"));
    EXPECT_FALSE(host_matches("api.github.com", "github.com"));
    EXPECT_FALSE(host_matches("api.github.com", "x.api.github.com"));
    EXPECT_FALSE(host_matches("api.github.com", "api.github.co"));
    EXPECT_FALSE(host_matches("api.github.com", "api.github.com.evil.example"));
    EXPECT_FALSE(host_matches("api.github.com", "evilapi.github.com"));
}

TEST(HostMatch, CaseInsensitive) {
    EXPECT_TRUE(host_matches("api.github.com", "API.GitHub.COM"));
    EXPECT_TRUE(host_matches("API.GITHUB.COM", "api.github.com"));
    EXPECT_TRUE(host_matches("*.Example.com", "WWW.example.COM"));
}

TEST(HostMatch, TrailingDotTolerated) {
    EXPECT_TRUE(host_matches("api.github.com", "api.github.com."));
    EXPECT_TRUE(host_matches("api.github.com.", "api.github.com"));
    EXPECT_TRUE(host_matches("*.example.com", "a.example.com."));
    EXPECT_TRUE(host_matches("*.example.com.", "a.example.com"));
    EXPECT_FALSE(host_matches("api.github.com", "api.github.com.."));
}

TEST(HostMatch, WildcardMatchesOneLabel) {
    EXPECT_TRUE(host_matches("*.example.com", "a.example.com"));
    EXPECT_TRUE(host_matches("*.example.com", "tenant-1.example.com"));
    EXPECT_TRUE(host_matches("*.atlassian.net", "mycompany.atlassian.net"));
}

TEST(HostMatch, WildcardDoesNotMatchTheApex) {
    EXPECT_FALSE(host_matches("*.example.com", "example.com"));
    EXPECT_FALSE(host_matches("*.example.com", "example.com."));
    EXPECT_FALSE(host_matches("*.example.com", ".example.com"));
}

TEST(HostMatch, WildcardDoesNotMatchTwoLabels) {
    EXPECT_FALSE(host_matches("*.example.com", "a.b.example.com"));
    EXPECT_FALSE(host_matches("*.example.com", "x.y.z.example.com"));
}

TEST(HostMatch, WildcardNeedsALabelBoundary) {
    EXPECT_FALSE(host_matches("*.example.com", "aexample.com"));
    EXPECT_FALSE(host_matches("*.example.com", "a.notexample.com"));
    EXPECT_FALSE(host_matches("*.example.com", "a.example.com.evil.test"));
}

TEST(HostMatch, EmptyAndMalformedNamesNeverMatch) {
    EXPECT_FALSE(host_matches("example.com", ""));
    EXPECT_FALSE(host_matches("*.example.com", ""));
    EXPECT_FALSE(host_matches("", ""));
    EXPECT_FALSE(host_matches("", "example.com"));
    EXPECT_FALSE(host_matches("example.com", "."));
    EXPECT_FALSE(host_matches("*.example.com", "a..example.com"));
    EXPECT_FALSE(host_matches("a..example.com", "a..example.com"));
    EXPECT_FALSE(host_matches("*.", "a."));
    EXPECT_FALSE(host_matches("*", "a"));
}

TEST(HostMatch, AWildcardIsOnlyAWildcardInFront) {
    // A '*' elsewhere in a pattern is no wildcard (the parser rejects such patterns anyway).
    EXPECT_FALSE(host_matches("api.*.com", "api.github.com"));
    EXPECT_FALSE(host_matches("*example.com", "aexample.com"));
}
