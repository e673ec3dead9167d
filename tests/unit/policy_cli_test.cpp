// SPDX-License-Identifier: Apache-2.0
// What `mcpwarden policy validate|explain|show` compute (policy_inspect), and the shipped
// policies in policies/.
#include <sys/socket.h>

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "error.h"
#include "policy_inspect.h"

namespace fs = std::filesystem;
using namespace mcpwarden;

namespace {

std::vector<std::string> lines(const std::vector<Diagnostic>& list, bool warning) {
    std::vector<std::string> out;
    for (const auto& d : list) out.push_back(d.to_string(warning));
    return out;
}

std::string joined(const std::vector<Diagnostic>& list, bool warning) {
    std::string out;
    for (const auto& l : lines(list, warning)) out += l + "\n";
    return out;
}

PolicyCheck check(const std::string& text) { return check_policy_text(text, "t.yaml"); }

Policy policy(const std::string& text) {
    auto c = check(text);
    EXPECT_TRUE(c.ok()) << joined(c.errors, false);
    return c.policy.value_or(Policy{});
}

Explanation explain_to(const std::string& policy_text, const std::string& to) {
    return explain(policy(policy_text), parse_destination(to));
}

std::string usage_error(const std::string& to) {
    try {
        parse_destination(to);
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::usage);
        return e.what();
    }
    ADD_FAILURE() << "accepted: " << to;
    return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool any_note(const Explanation& x, const std::string& part) {
    for (const auto& n : x.notes) {
        if (has(n, part)) return true;
    }
    return false;
}

const char* kRules = R"(name: t
egress:
  allow:
    - cidr: 10.0.0.0/8
      ports: [443]
      protocol: tcp
    - cidr: 0.0.0.0/0
      ports: [80]
    - host: api.example.com
      ports: [443]
      protocol: tcp
    - host: "*.tenant.example"
      ports: [443, 8443]
  deny:
    - cidr: 10.1.0.0/16
      ports: [443]
)";

}  // namespace

// ---- validate: errors, each with file:line:column ---------------------------------------

TEST(PolicyValidate, ValidPolicyHasNoDiagnostics) {
    auto c = check("name: t\nlimits: { memory: 64Mi }\negress:\n  allow:\n    - host: api.example.com\n      ports: [443]\n");
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(c.warnings.empty()) << joined(c.warnings, true);
    ASSERT_TRUE(c.policy);
    EXPECT_EQ(c.policy->name, "t");
}

TEST(PolicyValidate, EveryErrorKindWithItsPosition) {
    const std::string text =
        "name: t\n"                           // 1
        "colour: blue\n"                      // 2  unknown key
        "limits:\n"                           // 3
        "  memory: lots\n"                    // 4  bad size
        "  pids: -3\n"                        // 5  bad count
        "egress:\n"                           // 6
        "  allow:\n"                          // 7
        "    - cidr: 10.0.0.1/8\n"            // 8  host bits set
        "    - host: api.*.example.com\n"     // 9  wildcard not first
        "    - host: 192.0.2.1\n"             // 10 address as host
        "    - cidr: 192.0.2.0/24\n"          // 11
        "      ports: [0]\n"                  // 12 port 0
        "      protocol: sctp\n"              // 13 bad protocol
        "    - ports: [443]\n"                // 14 no target
        "  deny:\n"                           // 15
        "    - host: evil.example.com\n";     // 16 deny by name
    auto c = check(text);
    ASSERT_FALSE(c.ok());
    auto got = lines(c.errors, false);
    auto expect_line = [&](const std::string& prefix, const std::string& part) {
        for (const auto& l : got) {
            if (l.rfind(prefix, 0) == 0 && has(l, part)) return;
        }
        ADD_FAILURE() << "no error " << prefix << " ... " << part << " in:\n" << joined(c.errors, false);
    };
    expect_line("t.yaml:2:1: ", "unknown key 'colour' in the policy");
    expect_line("t.yaml:4:11: ", "limits.memory");
    expect_line("t.yaml:5:9: ", "limits.pids must be a whole number");
    expect_line("t.yaml:8:13: ", "cidr: ");
    expect_line("t.yaml:9:13: ", "wildcard may only be the whole first label");
    expect_line("t.yaml:10:13: ", "is an address; write it as cidr: 192.0.2.1");
    expect_line("t.yaml:12:15: ", "ports: ");
    expect_line("t.yaml:13:17: ", "protocol must be tcp, udp or any, not 'sctp'");
    expect_line("t.yaml:14:7: ", "needs a cidr or a host");
    expect_line("t.yaml:16:13: ", "host names can only be allowed");
    EXPECT_EQ(got.size(), 10u) << joined(c.errors, false);
    EXPECT_FALSE(c.policy);
}

TEST(PolicyValidate, YamlSyntaxErrorHasAPosition) {
    auto c = check("name: t\negress:\n  allow: [\n");
    ASSERT_EQ(c.errors.size(), 1u);
    EXPECT_TRUE(has(c.errors[0].to_string(false), "t.yaml:")) << c.errors[0].to_string(false);
    EXPECT_TRUE(has(c.errors[0].message, "YAML syntax")) << c.errors[0].message;
    EXPECT_GT(c.errors[0].where.line, 0);
}

TEST(PolicyValidate, MissingNameAndEmptyFile) {
    EXPECT_EQ(lines(check("limits: { pids: 3 }\n").errors, false),
              (std::vector<std::string>{"t.yaml:1:1: the policy needs a name (name: my-integration)"}));
    EXPECT_EQ(lines(check("").errors, false),
              (std::vector<std::string>{"t.yaml:1:1: the policy is empty; it needs at least a name"}));
}

TEST(PolicyValidate, UnreadableFileIsAnErrorNamingIt) {
    auto c = check_policy_file("/nonexistent/p.yaml");
    ASSERT_EQ(c.errors.size(), 1u);
    EXPECT_EQ(c.errors[0].to_string(false), "/nonexistent/p.yaml: cannot read the policy: No such file or directory");
}

TEST(PolicyValidate, DiagnosticJson) {
    auto c = check("name: t\nbogus: 1\n");
    ASSERT_EQ(c.errors.size(), 1u);
    auto j = c.errors[0].to_json();
    EXPECT_EQ(j["file"], "t.yaml");
    EXPECT_EQ(j["line"], 2);
    EXPECT_EQ(j["column"], 1);
    EXPECT_TRUE(has(j["message"].get<std::string>(), "unknown key 'bogus'"));
}

// ---- validate: warnings beyond parsing ----------------------------------------------------

TEST(PolicyLint, DuplicateAndOverlappingRules) {
    auto c = check(
        "name: t\n"
        "egress:\n"
        "  allow:\n"
        "    - { cidr: 192.0.2.0/24, ports: [443], protocol: tcp }\n"
        "    - { cidr: 192.0.2.0/24, ports: [443], protocol: tcp }\n"
        "    - { cidr: 198.51.100.0/24, ports: [80-90] }\n"
        "    - { cidr: 198.51.100.0/24, ports: [85-100], protocol: udp }\n"
        "    - { host: api.example.com, ports: [443] }\n"
        "    - { host: api.example.com, ports: [443] }\n");
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(lines(c.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:5:7: warning: duplicate allow rule: the rule at t.yaml:4:7 already allows cidr 192.0.2.0/24 on 443 tcp",
                  "t.yaml:7:7: warning: allow rule overlaps the rule at t.yaml:6:7 (cidr 198.51.100.0/24, 85-90 udp); merge them into one rule",
                  "t.yaml:9:7: warning: duplicate allow rule: the rule at t.yaml:8:7 already allows host api.example.com on 443 tcp and udp",
              }));
}

TEST(PolicyLint, RulesOnOtherProtocolsOrPortsAreNotDuplicates) {
    auto c = check(
        "name: t\negress:\n  allow:\n"
        "    - { cidr: 192.0.2.0/24, ports: [53], protocol: tcp }\n"
        "    - { cidr: 192.0.2.0/24, ports: [53], protocol: udp }\n"
        "    - { cidr: 192.0.2.0/24, ports: [443], protocol: tcp }\n");
    EXPECT_TRUE(c.warnings.empty()) << joined(c.warnings, true);
}

TEST(PolicyLint, RedundantNarrowerAllow) {
    auto c = check(
        "name: t\negress:\n  allow:\n"
        "    - { cidr: 203.0.113.0/24, ports: [443] }\n"
        "    - { cidr: 203.0.113.8/29, ports: [443], protocol: tcp }\n"
        "    - { host: \"*.example.com\", ports: [443] }\n"
        "    - { host: api.example.com, ports: [443], protocol: tcp }\n");
    EXPECT_EQ(lines(c.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:5:7: warning: redundant allow rule: the rule at t.yaml:4:7 (cidr 203.0.113.0/24) already allows cidr 203.0.113.8/29 on these ports",
                  "t.yaml:7:7: warning: redundant allow rule: the rule at t.yaml:6:7 (host *.example.com) already allows host api.example.com on these ports",
              }));
}

TEST(PolicyLint, AReservedRangeBetweenMakesTheNarrowerAllowNeeded) {
    // 0.0.0.0/0 does not open loopback; 127.0.0.1/32 does: not redundant. A wider rule that
    // lies inside the reserved range itself (10.0.0.0/8) does make a narrower one redundant.
    auto c = check(
        "name: t\negress:\n  allow:\n"
        "    - { cidr: 0.0.0.0/0, ports: [8080] }\n"
        "    - { cidr: 127.0.0.1/32, ports: [8080] }\n"
        "    - { cidr: 10.0.0.0/8, ports: [22] }\n"
        "    - { cidr: 10.2.0.0/16, ports: [22] }\n");
    EXPECT_EQ(lines(c.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:4:7: warning: allow rule opens every public IPv4 address (reserved ranges stay denied); prefer host rules or the service's published networks",
                  "t.yaml:7:7: warning: redundant allow rule: the rule at t.yaml:6:7 (cidr 10.0.0.0/8) already allows cidr 10.2.0.0/16 on these ports",
              }));
}

TEST(PolicyLint, DenyCancelsAnAllow) {
    auto c = check(
        "name: t\negress:\n  allow:\n"
        "    - { cidr: 172.16.2.0/24, ports: [443], protocol: tcp }\n"
        "    - { cidr: 172.16.3.0/24, ports: [80, 443] }\n"
        "    - { cidr: 10.0.0.0/8, ports: [443] }\n"
        "  deny:\n"
        "    - { cidr: 172.16.0.0/16, ports: [443] }\n"
        "    - { cidr: 10.1.0.0/16, ports: [443] }\n");
    EXPECT_EQ(lines(c.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:4:7: warning: allow rule has no effect: the deny rule at t.yaml:8:7 (cidr 172.16.0.0/16) covers everything it allows, and deny wins over allow",
                  "t.yaml:5:7: warning: part of this allow rule has no effect: 443 tcp and udp is denied by the rule at t.yaml:8:7 (cidr 172.16.0.0/16), and deny wins over allow",
              }));  // 10.0.0.0/8 with a hole punched in it is what deny rules are for: no warning
}

TEST(PolicyLint, CloudMetadata) {
    auto c = check("name: t\negress:\n  allow:\n    - { cidr: 169.254.169.254/32, ports: [80] }\n");
    ASSERT_EQ(c.warnings.size(), 1u);
    EXPECT_EQ(c.warnings[0].to_string(true),
              "t.yaml:4:7: warning: allow rule opens the cloud metadata service (169.254.169.254): "
              "instance credentials become reachable from the sandbox");
    // 0.0.0.0/0 does not reach it (reserved range): only the /0 warning.
    auto wide = check("name: t\negress:\n  allow:\n    - { cidr: 0.0.0.0/0, ports: [80] }\n");
    ASSERT_EQ(wide.warnings.size(), 1u);
    EXPECT_TRUE(has(wide.warnings[0].message, "every public IPv4 address"));
}

TEST(PolicyLint, UnknownNames) {
    auto c = check(
        "name: other\n"
        "user: no-such-user-mcpwarden\n"
        "mcp:\n"
        "  tools: { deny: [\"delete_*\"] }\n"
        "  tool_timeouts:\n"
        "    delete_repo: 5m\n"
        "    search: 10s\n");
    ASSERT_TRUE(c.ok()) << joined(c.errors, false);
    EXPECT_EQ(lines(c.warnings, true),
              (std::vector<std::string>{
                  "t.yaml:1:1: warning: the policy is named 'other' but its file is t.yaml: `--policy t` would load a policy named 'other'",
                  "t.yaml:2:1: warning: user 'no-such-user-mcpwarden' does not exist on this host: `mcpwarden run` with this policy refuses to start unless --user names another",
                  "t.yaml:6:5: warning: mcp.tool_timeouts names 'delete_repo', which the tool filters refuse (matches the deny pattern 'delete_*'): the timeout never applies",
              }));
}

TEST(PolicyLint, LintPolicyWithoutText) {
    Policy p = policy(kRules);
    auto w = lint_policy(p);
    ASSERT_EQ(w.size(), 1u) << joined(w, true);
    EXPECT_EQ(w[0].to_string(true),
              "t.yaml:7:7: warning: allow rule opens every public IPv4 address (reserved ranges stay denied); "
              "prefer host rules or the service's published networks");
}

// ---- explain: --to syntax -----------------------------------------------------------------

TEST(PolicyExplain, DestinationForms) {
    auto d = parse_destination("api.GitHub.com.:443");
    EXPECT_EQ(d.host, "api.github.com");
    EXPECT_FALSE(d.address);
    EXPECT_EQ(d.port, 443);
    EXPECT_EQ(d.protocol, Protocol::tcp);
    EXPECT_EQ(d.to_string(), "api.github.com:443/tcp");

    d = parse_destination("10.0.0.1:53/udp");
    ASSERT_TRUE(d.address);
    EXPECT_EQ(d.address->to_string(), "10.0.0.1");
    EXPECT_EQ(d.protocol, Protocol::udp);

    d = parse_destination("[2001:db8::1]:443/TCP");
    ASSERT_TRUE(d.address);
    EXPECT_EQ(d.address->family, AF_INET6);
    EXPECT_EQ(d.to_string(), "[2001:db8::1]:443/tcp");

    d = parse_destination("[::ffff:192.0.2.1]:80");  // mapped: decided as IPv4, like the kernel
    ASSERT_TRUE(d.address);
    EXPECT_EQ(d.address->family, AF_INET);
    EXPECT_EQ(d.to_string(), "192.0.2.1:80/tcp");
}

TEST(PolicyExplain, BadDestinationsSayWhatIsWrong) {
    EXPECT_TRUE(has(usage_error("api.github.com"), "a port is missing"));
    EXPECT_TRUE(has(usage_error("api.github.com:0"), "the port must be a number from 1 to 65535, not '0'"));
    EXPECT_TRUE(has(usage_error("api.github.com:70000"), "not '70000'"));
    EXPECT_TRUE(has(usage_error("api.github.com:https"), "not 'https'"));
    EXPECT_TRUE(has(usage_error("api.github.com:443/sctp"), "the protocol must be tcp or udp, not 'sctp'"));
    EXPECT_TRUE(has(usage_error("2001:db8::1:443"), "write an IPv6 address in brackets"));
    EXPECT_TRUE(has(usage_error("[2001:db8::1:443"), "missing ']'"));
    EXPECT_TRUE(has(usage_error("[2001:db8::1]443"), "a port must follow the address"));
    EXPECT_TRUE(has(usage_error("[192.0.2.1]:443"), "is not an IPv6 address"));
    EXPECT_TRUE(has(usage_error(":443"), "the host is missing"));
    EXPECT_TRUE(has(usage_error("*.example.com:443"), "not a pattern"));
    EXPECT_TRUE(has(usage_error("999.1.1.1:443"), "'999.1.1.1' is not a valid IPv4 address"));
    EXPECT_TRUE(has(usage_error("bad_name!.com:443"), "character '!'"));
    EXPECT_TRUE(has(usage_error("a..b:443"), "1 to 63 characters"));
    // Every message shows the accepted form.
    EXPECT_TRUE(has(usage_error("x"), "HOST_OR_IP:PORT[/PROTO]"));
}

// ---- explain: verdicts --------------------------------------------------------------------

TEST(PolicyExplain, CidrAllow) {
    auto x = explain_to(kRules, "10.9.9.9:443");
    EXPECT_TRUE(x.allowed);
    EXPECT_EQ(x.rule, "allow cidr 10.0.0.0/8 ports 443 tcp (t.yaml:4:7)");
    EXPECT_EQ(x.summary, "tcp 10.9.9.9:443: allowed by allow cidr 10.0.0.0/8 ports 443 tcp (t.yaml:4:7)");
}

TEST(PolicyExplain, DenyWins) {
    auto x = explain_to(kRules, "10.1.2.3:443");
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule, "deny cidr 10.1.0.0/16 ports 443 (t.yaml:15:7)");
    EXPECT_EQ(x.summary, "tcp 10.1.2.3:443: denied by deny cidr 10.1.0.0/16 ports 443 (t.yaml:15:7)");
}

TEST(PolicyExplain, DefaultDeny) {
    auto x = explain_to(kRules, "198.51.100.7:22");  // 0.0.0.0/0 allows port 80 only
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule, "default deny");
    EXPECT_EQ(x.summary, "tcp 198.51.100.7:22: denied: default deny");
    // A host rule allows 443: the note says how an address learned from its DNS answers passes.
    auto udp = explain_to(kRules, "198.51.100.7:443/udp");
    EXPECT_FALSE(udp.allowed);
    EXPECT_EQ(udp.rule, "default deny");
    EXPECT_TRUE(any_note(udp, "(*.tenant.example)")) << (udp.notes.empty() ? "" : udp.notes[0]);
}

TEST(PolicyExplain, InsideAnAllowedReservedRangeOnAnotherPort) {
    // 10.0.0.0/8 is private (reserved): the rule opens 443/tcp there, nothing else.
    auto x = explain_to(kRules, "10.9.9.9:22");
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule, "default deny: reserved range 10.0.0.0/8 (private) (allow it with a rule naming an address inside it)");
    EXPECT_FALSE(explain_to(kRules, "10.9.9.9:443/udp").allowed);  // the rule is tcp only
}

TEST(PolicyExplain, ReservedRange) {
    auto x = explain_to(kRules, "127.0.0.1:80");  // 0.0.0.0/0 port 80 does not open loopback
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule,
              "default deny: reserved range 127.0.0.0/8 (loopback) (allow it with a rule naming an address inside it)");
    auto meta = explain_to(kRules, "169.254.169.254:80");
    EXPECT_TRUE(has(meta.rule, "169.254.0.0/16 (link-local, cloud metadata)")) << meta.rule;
    auto v6 = explain_to(kRules, "[::1]:443");
    EXPECT_FALSE(v6.allowed);
    EXPECT_TRUE(has(v6.rule, "::1/128 (loopback)")) << v6.rule;
    auto unspecified = explain_to(kRules, "0.0.0.0:80");
    EXPECT_FALSE(unspecified.allowed);
    EXPECT_TRUE(any_note(unspecified, "decided as the loopback address"));
}

TEST(PolicyExplain, ReservedRangeExplicitlyAllowed) {
    auto x = explain_to("name: t\negress:\n  allow:\n    - { cidr: 127.0.0.1/32, ports: [8080], protocol: tcp }\n",
                        "127.0.0.1:8080");
    EXPECT_TRUE(x.allowed);
    EXPECT_EQ(x.rule, "allow cidr 127.0.0.1 ports 8080 tcp (t.yaml:4:7)");
}

TEST(PolicyExplain, PublicAddressThroughSlashZero) {
    auto x = explain_to(kRules, "[::ffff:198.51.100.7]:80");
    EXPECT_TRUE(x.allowed);
    EXPECT_EQ(x.rule, "allow cidr 0.0.0.0/0 ports 80 (t.yaml:7:7)");
}

TEST(PolicyExplain, HostRuleMatches) {
    auto x = explain_to(kRules, "API.example.com:443");
    EXPECT_TRUE(x.allowed);
    EXPECT_EQ(x.rule, "allow host api.example.com ports 443 tcp (t.yaml:9:7)");
    EXPECT_EQ(x.summary,
              "tcp api.example.com:443: allowed by allow host api.example.com ports 443 tcp (t.yaml:9:7), "
              "once resolved: the addresses in DNS answers for api.example.com are admitted on 443 tcp");
    EXPECT_TRUE(any_note(x, "deny wins"));  // deny 10.1.0.0/16 port 443 still applies
}

TEST(PolicyExplain, HostRuleOnAnotherPortOrProtocol) {
    auto x = explain_to(kRules, "api.example.com:80");
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule, "default deny");
    EXPECT_EQ(x.summary,
              "tcp api.example.com:80: denied: api.example.com resolves (allow host api.example.com ports 443 tcp "
              "(t.yaml:9:7)), but no rule allows 80/tcp: default deny");
    EXPECT_FALSE(explain_to(kRules, "api.example.com:443/udp").allowed);
}

TEST(PolicyExplain, NoHostRule) {
    auto x = explain_to(kRules, "evil.example.net:443");
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.summary, "tcp evil.example.net:443: denied: no host rule allows evil.example.net (its DNS queries are refused)");
}

TEST(PolicyExplain, WildcardMatchesOneLabel) {
    auto x = explain_to(kRules, "acme.tenant.example:8443/udp");
    EXPECT_TRUE(x.allowed);
    EXPECT_EQ(x.rule, "allow host *.tenant.example ports 443,8443 (t.yaml:12:7)");

    auto apex = explain_to(kRules, "tenant.example:443");
    EXPECT_FALSE(apex.allowed);
    EXPECT_TRUE(has(apex.summary, "no host rule allows tenant.example"));
    EXPECT_TRUE(any_note(apex, "*.tenant.example (t.yaml:12:7) does not match its apex tenant.example")) << apex.notes.size();

    auto deep = explain_to(kRules, "a.b.tenant.example:443");
    EXPECT_FALSE(deep.allowed);
    EXPECT_TRUE(any_note(deep, "matches one label only"));
}

TEST(PolicyExplain, AuditOnlyIsNoted) {
    auto x = explain_to("name: t\negress:\n  audit_only: true\n", "192.0.2.1:443");
    EXPECT_FALSE(x.allowed);
    EXPECT_TRUE(any_note(x, "audit_only"));
}

TEST(PolicyExplain, NoEgressSectionDeniesEverything) {
    auto x = explain_to("name: t\n", "1.1.1.1:443");
    EXPECT_FALSE(x.allowed);
    EXPECT_EQ(x.rule, "default deny");
    EXPECT_EQ(explain_to("name: t\n", "1.1.1.1:443").to_json()["verdict"], "denied");
}

// ---- show ---------------------------------------------------------------------------------

TEST(PolicyShow, JsonIsNormalised) {
    Policy p = policy(
        "name: t\n"
        "limits: { memory: 0.5Gi, cpu: 1500m, timeout: 90m, pids: 100 }\n"
        "egress:\n"
        "  allow:\n"
        "    - { cidr: 192.0.2.0/24, ports: [443, 80], protocol: tcp }\n"
        "    - { cidr: 192.0.2.0/24, ports: [81-90], protocol: tcp }\n"
        "    - { cidr: 127.0.0.1, ports: [8080] }\n"
        "    - { host: api.example.com }\n"
        "  deny:\n"
        "    - { cidr: 192.0.2.128/25 }\n");
    auto j = normalised_policy_json(p);
    EXPECT_EQ(j["name"], "t");
    EXPECT_EQ(j["user"], nullptr);  // no fixed account: a uid of its own per client
    EXPECT_EQ(j["filesystem"]["read_only"], nlohmann::json::array());
    EXPECT_EQ(j["filesystem"]["view"][0]["path"], "/");
    EXPECT_EQ(j["limits"]["memory_bytes"], 512u << 20);
    EXPECT_EQ(j["limits"]["cpu_millicores"], 1500);
    EXPECT_EQ(j["limits"]["timeout_ms"], 90 * 60 * 1000);
    EXPECT_EQ(j["limits"]["pids"], 100);
    EXPECT_EQ(j["egress"]["default"], "deny");
    EXPECT_EQ(j["egress"]["deny_wins"], true);
    const auto& rules = j["egress"]["rules"];
    ASSERT_EQ(rules.size(), 4u) << rules.dump();
    EXPECT_EQ(rules[0]["cidr"], "192.0.2.0/24");
    EXPECT_EQ(rules[0]["ports"], nlohmann::json({"80-90", "443"}));  // merged across two rules
    EXPECT_EQ(rules[0]["sources"], nlohmann::json({"t.yaml:5:7", "t.yaml:6:7"}));
    EXPECT_EQ(rules[1]["cidr"], "127.0.0.1/32");
    EXPECT_EQ(rules[1]["protocol"], "any");
    EXPECT_EQ(rules[2]["host"], "api.example.com");
    EXPECT_EQ(rules[2]["ports"], nlohmann::json({"1-65535"}));  // every port, made explicit
    EXPECT_EQ(rules[3]["action"], "deny");
    bool loopback = false;
    for (const auto& r : j["egress"]["reserved"]) {
        if (r["cidr"] == "127.0.0.0/8") {
            loopback = true;
            EXPECT_EQ(r["what"], "loopback");
            EXPECT_EQ(r["opened_by"].size(), 1u);
        }
        if (r["cidr"] == "169.254.0.0/16") {
            EXPECT_EQ(r["action"], "deny");
        }
    }
    EXPECT_TRUE(loopback);
    EXPECT_GE(j["egress"]["reserved"].size(), 16u);
    EXPECT_EQ(j["dns"]["upstream"], "/etc/resolv.conf");
    // MCP limits made explicit, even when off.
    EXPECT_EQ(j["mcp"]["enabled"], false);
    EXPECT_EQ(j["mcp"]["call_timeout_ms"], 60000);
    EXPECT_EQ(j["mcp"]["max_message_bytes"], 4u << 20);
    EXPECT_EQ(j["mcp"]["tools"]["allow"], nlohmann::json({"*"}));
}

TEST(PolicyShow, TextIsReadable) {
    Policy p = policy(
        "name: t\n"
        "description: A test.\n"
        "limits: { memory: 512Mi, cpu: 1, timeout: 10m }\n"
        "egress:\n"
        "  allow:\n"
        "    - { host: api.example.com, ports: [443], protocol: tcp }\n"
        "mcp: { call_timeout: 30s }\n"
        "env: { pass: [LANG], set: { TOKEN: { file: /run/secret } } }\n");
    std::string text = normalised_policy_text(p);
    for (const char* part : {"policy t (t.yaml)", "  A test.", "user: a uid of its own per client (mcpwarden-<uid>; default)",
                             "  hidden     /home  (default: users' homes are hidden)",
                             "  memory:  512MiB (536870912 bytes), no swap", "  pids:    no limit",
                             "  cpu:     1 core (1000m)", "  timeout: 10m",
                             "egress: default deny; deny wins over allow",
                             "    host api.example.com ports 443 tcp  (t.yaml:6:7)",
                             "  deny: no explicit rules", "    127.0.0.0/8       loopback",
                             "    169.254.0.0/16    link-local, cloud metadata",
                             "queries for other names are refused", "mcp: on (the policy has an mcp section)",
                             "  call_timeout:      30s", "  max_message_bytes: 4MiB", "  pass: LANG",
                             "  set TOKEN from file /run/secret"}) {
        EXPECT_TRUE(has(text, part)) << "missing '" << part << "' in:\n" << text;
    }
}

// ---- the shipped policies -----------------------------------------------------------------

TEST(ShippedPolicies, EachParsesWithoutWarningsAndAllowsOnlyNamedHttps) {
    fs::path dir = fs::path(__FILE__).parent_path().parent_path().parent_path() / "policies";
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".yaml") continue;
        auto c = check_policy_file(entry.path().string());
        ASSERT_TRUE(c.ok()) << joined(c.errors, false);
        EXPECT_TRUE(c.warnings.empty()) << joined(c.warnings, true);
        const Policy& p = *c.policy;
        names.insert(p.name);
        EXPECT_EQ(p.name, entry.path().stem().string());
        EXPECT_FALSE(p.description.empty()) << p.name;
        EXPECT_TRUE(p.limits.memory_bytes && p.limits.pids && p.limits.cpu_millicores && p.limits.timeout) << p.name;
        EXPECT_TRUE(p.egress.deny.empty()) << p.name;
        EXPECT_FALSE(p.egress.audit_only) << p.name;
        for (const auto& r : p.egress.allow) {
            EXPECT_FALSE(r.cidr) << p.name << ": no CIDR rules in shipped policies: " << r.describe();
            EXPECT_EQ(r.ports, (std::vector<PortRange>{{443, 443}})) << r.describe();
            EXPECT_EQ(r.protocol, Protocol::tcp) << r.describe();
        }
        EXPECT_TRUE(p.mcp.enabled) << p.name << " has no mcp section";
    }
    for (const char* n : {"example", "github", "gitlab", "slack", "linear", "atlassian", "notion", "openai",
                          "anthropic", "package-fetch", "deny-all", "memory"}) {
        EXPECT_TRUE(names.count(n)) << "policies/" << n << ".yaml is missing";
    }
}

TEST(ShippedPolicies, TheyAllowTheirServicesAndNothingElse) {
    fs::path dir = fs::path(__FILE__).parent_path().parent_path().parent_path() / "policies";
    auto load = [&](const std::string& name) { return *check_policy_file((dir / (name + ".yaml")).string()).policy; };
    struct Case {
        const char* policy;
        const char* to;
        bool allowed;
    };
    for (const Case& c : std::vector<Case>{
             {"github", "api.github.com:443", true},
             {"github", "raw.githubusercontent.com:443", true},
             {"github", "github.com:22", false},
             {"github", "evil.githubusercontent.com:443", false},
             {"gitlab", "gitlab.com:443", true},
             {"gitlab", "gitlab.com:22", false},
             {"slack", "slack.com:443", true},
             {"slack", "files.slack.com:443", true},
             {"slack", "myteam.slack.com:443", false},
             {"linear", "api.linear.app:443", true},
             {"atlassian", "acme.atlassian.net:443", true},
             {"atlassian", "atlassian.net:443", false},
             {"atlassian", "a.b.atlassian.net:443", false},
             {"atlassian", "api.atlassian.com:443", true},
             {"notion", "api.notion.com:443", true},
             {"openai", "api.openai.com:443", true},
             {"openai", "api.anthropic.com:443", false},
             {"anthropic", "api.anthropic.com:443", true},
             {"package-fetch", "pypi.org:443", true},
             {"package-fetch", "files.pythonhosted.org:443", true},
             {"package-fetch", "registry.npmjs.org:443", true},
             {"package-fetch", "registry.yarnpkg.com:443", false},
             {"deny-all", "api.github.com:443", false},
             {"deny-all", "1.1.1.1:53/udp", false},
             {"deny-all", "127.0.0.1:8080", false},
             {"github", "140.82.112.3:443", false},  // no CIDR rules: only resolved addresses
         }) {
        auto x = explain(load(c.policy), parse_destination(c.to));
        EXPECT_EQ(x.allowed, c.allowed) << c.policy << " " << c.to << ": " << x.summary;
    }
}
