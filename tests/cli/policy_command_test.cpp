// SPDX-License-Identifier: Apache-2.0
// `mcpwarden policy validate|explain|show` end to end: the real binary, its output and exit
// status. No root needed.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace fs = std::filesystem;
using harness::Result;

namespace {

const fs::path kPolicies = fs::path(MCPWARDEN_SOURCE_DIR) / "policies";

Result warden(const std::vector<std::string>& args) { return harness::warden(args); }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A directory of policy files written by the test, removed afterwards.
class PolicyFiles {
public:
    PolicyFiles() {
        char tmpl[] = "/tmp/mcpwarden-cli-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
    }
    ~PolicyFiles() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string write(const std::string& name, const std::string& text) const {
        std::string path = (dir_ / name).string();
        std::ofstream(path) << text;
        return path;
    }
    std::string dir() const { return dir_.string(); }

private:
    fs::path dir_;
};

const char* kRules = R"(name: rules
egress:
  allow:
    - cidr: 10.0.0.0/8
      ports: [443]
      protocol: tcp
    - host: api.example.com
      ports: [443]
      protocol: tcp
    - host: "*.tenant.example"
      ports: [443]
  deny:
    - cidr: 10.1.0.0/16
      ports: [443]
)";

}  // namespace

// ---- validate -----------------------------------------------------------------------------

TEST(PolicyValidateCommand, EveryShippedPolicyIsValid) {
    std::vector<std::string> args{"policy", "validate", "--strict"};
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(kPolicies)) {
        if (e.path().extension() == ".yaml") files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 11u);
    args.insert(args.end(), files.begin(), files.end());
    auto r = warden(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    std::string expected;
    for (const auto& f : files) expected += f + ": ok (" + fs::path(f).stem().string() + ")\n";
    EXPECT_EQ(r.out, expected);
}

TEST(PolicyValidateCommand, EveryErrorOfEveryFileWithItsPosition) {
    PolicyFiles t;
    std::string good = t.write("good.yaml", "name: good\n");
    std::string bad = t.write("bad.yaml",
                              "name: bad\n"
                              "limits:\n"
                              "  memory: 12parsecs\n"
                              "  colour: red\n"
                              "egress:\n"
                              "  allow:\n"
                              "    - cidr: 10.0.0.0/33\n"
                              "  deny:\n"
                              "    - host: evil.example.com\n");
    std::string broken = t.write("broken.yaml", "name: [unclosed\n");
    auto r = warden({"policy", "validate", good, bad, broken});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, good + ": ok (good)\n");
    EXPECT_TRUE(has(r.err, bad + ":3:11: limits.memory: ")) << r.err;
    EXPECT_TRUE(has(r.err, bad + ":4:3: unknown key 'colour' in limits (known: memory, pids, cpu, timeout, open_files)")) << r.err;
    EXPECT_TRUE(has(r.err, bad + ":7:13: cidr: ")) << r.err;
    EXPECT_TRUE(has(r.err, bad + ":9:13: host names can only be allowed: a deny by name cannot be enforced")) << r.err;
    EXPECT_TRUE(has(r.err, broken + ":")) << r.err;
    EXPECT_TRUE(has(r.err, "YAML syntax")) << r.err;
    // Each error is one line that starts with the file name.
    std::istringstream lines(r.err);
    std::string line;
    while (std::getline(lines, line)) EXPECT_TRUE(line.rfind(t.dir(), 0) == 0) << line;
}

TEST(PolicyValidateCommand, WarningsPassUnlessStrict) {
    PolicyFiles t;
    std::string f = t.write("warn.yaml",
                            "name: warn\n"
                            "egress:\n"
                            "  allow:\n"
                            "    - { cidr: 192.0.2.0/24, ports: [443] }\n"
                            "    - { cidr: 192.0.2.0/24, ports: [443] }\n");
    auto r = warden({"policy", "validate", f});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, f + ": ok (warn)\n");
    EXPECT_TRUE(has(r.err, f + ":5:7: warning: duplicate allow rule: the rule at " + f + ":4:7")) << r.err;
    auto strict = warden({"policy", "validate", "--strict", f});
    EXPECT_EQ(strict.exit_code, 1);
    EXPECT_EQ(strict.out, "");
    EXPECT_TRUE(has(strict.err, "warnings are errors with --strict")) << strict.err;
}

TEST(PolicyValidateCommand, MissingFileAndUnknownName) {
    PolicyFiles t;
    auto r = warden({"policy", "validate", t.dir() + "/nope.yaml", "--policy-dir", t.dir(), "nosuch"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(has(r.err, t.dir() + "/nope.yaml: policy file " + t.dir() + "/nope.yaml does not exist")) << r.err;
    EXPECT_TRUE(has(r.err, t.dir() + "/nosuch.yaml: no policy named 'nosuch'")) << r.err;
}

TEST(PolicyValidateCommand, Json) {
    PolicyFiles t;
    std::string good = t.write("good.yaml", "name: good\n");
    std::string bad = t.write("bad.yaml", "name: bad\nextra: 1\n");
    auto r = warden({"policy", "validate", "--json", good, bad});
    EXPECT_EQ(r.exit_code, 1);
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["file"], good);
    EXPECT_EQ(j[0]["ok"], true);
    EXPECT_EQ(j[0]["name"], "good");
    EXPECT_EQ(j[1]["ok"], false);
    ASSERT_EQ(j[1]["errors"].size(), 1u);
    EXPECT_EQ(j[1]["errors"][0]["line"], 2);
    EXPECT_EQ(j[1]["errors"][0]["column"], 1);
    EXPECT_EQ(j[1]["errors"][0]["file"], bad);
}

TEST(PolicyValidateCommand, UsageErrors) {
    auto none = warden({"policy", "validate"});
    EXPECT_EQ(none.exit_code, 64);
    auto bare = warden({"policy"});
    EXPECT_EQ(bare.exit_code, 64);
}

// ---- explain ------------------------------------------------------------------------------

class PolicyExplainCommand : public ::testing::Test {
protected:
    Result explain(const std::string& to, std::vector<std::string> extra = {}) {
        std::vector<std::string> args{"policy", "explain", file_, "--to", to};
        args.insert(args.end(), extra.begin(), extra.end());
        return warden(args);
    }
    PolicyFiles t_;
    std::string file_ = t_.write("rules.yaml", kRules);
};

TEST_F(PolicyExplainCommand, CidrAllow) {
    auto r = explain("10.2.3.4:443");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "tcp 10.2.3.4:443: allowed by allow cidr 10.0.0.0/8 ports 443 tcp (" + file_ + ":4:7)\n");
}

TEST_F(PolicyExplainCommand, DenyWins) {
    auto r = explain("10.1.3.4:443");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, "tcp 10.1.3.4:443: denied by deny cidr 10.1.0.0/16 ports 443 (" + file_ + ":13:7)\n");
}

TEST_F(PolicyExplainCommand, DefaultDeny) {
    auto r = explain("198.51.100.7:22");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, "tcp 198.51.100.7:22: denied: default deny\n");
    auto udp = explain("10.2.3.4:443/udp");
    EXPECT_EQ(udp.exit_code, 1);
    EXPECT_TRUE(has(udp.out, "udp 10.2.3.4:443: denied: default deny")) << udp.out;
}

TEST_F(PolicyExplainCommand, ReservedRange) {
    auto r = explain("169.254.169.254:80");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(has(r.out, "denied: default deny: reserved range 169.254.0.0/16 (link-local, cloud metadata)")) << r.out;
    auto v6 = explain("[::1]:443");
    EXPECT_EQ(v6.exit_code, 1);
    EXPECT_TRUE(has(v6.out, "tcp [::1]:443: denied: default deny: reserved range ::1/128 (loopback)")) << v6.out;
}

TEST_F(PolicyExplainCommand, HostRules) {
    auto match = explain("api.example.com:443");
    EXPECT_EQ(match.exit_code, 0) << match.err;
    EXPECT_TRUE(has(match.out, "tcp api.example.com:443: allowed by allow host api.example.com ports 443 tcp (" +
                                   file_ + ":7:7), once resolved")) << match.out;
    auto other = explain("other.example.com:443");
    EXPECT_EQ(other.exit_code, 1);
    EXPECT_EQ(other.out, "tcp other.example.com:443: denied: no host rule allows other.example.com (its DNS queries are refused)\n");
    auto port = explain("api.example.com:80");
    EXPECT_EQ(port.exit_code, 1);
    EXPECT_TRUE(has(port.out, "api.example.com resolves")) << port.out;
}

TEST_F(PolicyExplainCommand, WildcardMatchesOneLabel) {
    EXPECT_EQ(explain("acme.tenant.example:443").exit_code, 0);
    auto apex = explain("tenant.example:443");
    EXPECT_EQ(apex.exit_code, 1);
    EXPECT_TRUE(has(apex.out, "does not match its apex tenant.example")) << apex.out;
    auto deep = explain("a.b.tenant.example:443");
    EXPECT_EQ(deep.exit_code, 1);
    EXPECT_TRUE(has(deep.out, "matches one label only")) << deep.out;
}

TEST_F(PolicyExplainCommand, BadToSyntax) {
    for (const auto& [to, why] : std::vector<std::pair<std::string, std::string>>{
             {"10.0.0.1", "a port is missing"},
             {"::1:443", "write an IPv6 address in brackets"},
             {"10.0.0.1:99999", "the port must be a number from 1 to 65535"},
             {"10.0.0.1:443/icmp", "the protocol must be tcp or udp, not 'icmp'"}}) {
        auto r = explain(to);
        EXPECT_EQ(r.exit_code, 64) << to;
        EXPECT_EQ(r.out, "");
        EXPECT_TRUE(has(r.err, "--to " + to + ": " + why)) << r.err;
    }
    auto missing = warden({"policy", "explain", file_});
    EXPECT_EQ(missing.exit_code, 64);
    EXPECT_TRUE(has(missing.err, "--to")) << missing.err;
}

TEST_F(PolicyExplainCommand, Json) {
    auto r = explain("10.1.3.4:443", {"--json"});
    EXPECT_EQ(r.exit_code, 1);
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["verdict"], "denied");
    EXPECT_EQ(j["rule"], "deny cidr 10.1.0.0/16 ports 443 (" + file_ + ":13:7)");
    EXPECT_EQ(j["policy"], "rules");
    EXPECT_EQ(j["destination"]["address"], "10.1.3.4");
    EXPECT_EQ(j["destination"]["port"], 443);
    EXPECT_EQ(j["destination"]["protocol"], "tcp");
}

TEST_F(PolicyExplainCommand, InvalidPolicyIsReportedWithPositions) {
    std::string bad = t_.write("bad.yaml", "name: bad\negress:\n  allow:\n    - cidr: nonsense\n");
    auto r = warden({"policy", "explain", bad, "--to", "1.1.1.1:443"});
    EXPECT_EQ(r.exit_code, 78);
    EXPECT_TRUE(has(r.err, bad + ":4:13: cidr: ")) << r.err;
}

// ---- show ---------------------------------------------------------------------------------

TEST(PolicyShowCommand, HumanAndJson) {
    PolicyFiles t;
    std::string f = t.write("show.yaml",
                            "name: show\n"
                            "limits: { memory: 1G, timeout: 3600s }\n"
                            "egress:\n"
                            "  allow:\n"
                            "    - { cidr: 192.0.2.0/24, ports: [443], protocol: tcp }\n"
                            "    - { cidr: 192.0.2.0/24, ports: [80], protocol: tcp }\n"
                            "dns: { min_ttl: 2m, max_learned: 100 }\n");
    auto r = warden({"policy", "show", f});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has(r.out, "policy show (" + f + ")")) << r.out;
    EXPECT_TRUE(has(r.out, "  memory:  1GiB (1073741824 bytes), no swap")) << r.out;
    EXPECT_TRUE(has(r.out, "  timeout: 1h")) << r.out;
    EXPECT_TRUE(has(r.out, "    cidr 192.0.2.0/24 ports 80,443 tcp  (" + f + ":5:7, " + f + ":6:7)")) << r.out;
    EXPECT_TRUE(has(r.out, "egress: default deny")) << r.out;
    EXPECT_TRUE(has(r.out, "    127.0.0.0/8       loopback")) << r.out;
    EXPECT_TRUE(has(r.out, "mcp: off")) << r.out;
    EXPECT_TRUE(has(r.out, "  min_ttl:     2m")) << r.out;
    EXPECT_TRUE(has(r.out, "  max_learned: 100 addresses")) << r.out;
    EXPECT_TRUE(has(r.out, "  reserved answers: dropped")) << r.out;

    auto j = warden({"policy", "show", "--json", f});
    EXPECT_EQ(j.exit_code, 0) << j.err;
    auto doc = nlohmann::json::parse(j.out);
    EXPECT_EQ(doc["name"], "show");
    EXPECT_EQ(doc["limits"]["memory_bytes"], 1u << 30);
    EXPECT_EQ(doc["limits"]["timeout_ms"], 3600000);
    EXPECT_EQ(doc["egress"]["rules"][0]["ports"], nlohmann::json({"80", "443"}));
    EXPECT_EQ(doc["egress"]["default"], "deny");
    EXPECT_EQ(doc["dns"]["min_ttl_ms"], 120000);
    EXPECT_EQ(doc["dns"]["max_learned"], 100);
    EXPECT_EQ(doc["dns"]["allow_reserved_answers"], false);
}

// ---- policy directory and names -----------------------------------------------------------

TEST(PolicyDirCommand, NamesResolveInTheCheckoutFromABuildTree) {
    auto r = warden({"policy", "show", "github"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has(r.out, "policy github (" + (kPolicies / "github.yaml").string() + ")")) << r.out;
    auto x = warden({"policy", "explain", "atlassian", "--to", "acme.atlassian.net:443"});
    EXPECT_EQ(x.exit_code, 0) << x.out << x.err;
    auto v = warden({"policy", "validate", "deny-all", "package-fetch"});
    EXPECT_EQ(v.exit_code, 0) << v.err;
    EXPECT_TRUE(has(v.out, (kPolicies / "deny-all.yaml").string() + ": ok (deny-all)")) << v.out;
}

TEST(PolicyDirCommand, PolicyDirOption) {
    PolicyFiles t;
    t.write("mine.yaml", "name: mine\negress:\n  allow:\n    - { host: internal.example, ports: [8443] }\n");
    auto r = warden({"policy", "explain", "mine", "--policy-dir", t.dir(), "--to", "internal.example:8443"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has(r.out, "allowed by allow host internal.example ports 8443 (" + t.dir() + "/mine.yaml:4:7)")) << r.out;
    auto unknown = warden({"policy", "show", "github", "--policy-dir", t.dir()});
    EXPECT_EQ(unknown.exit_code, 64);
    EXPECT_TRUE(has(unknown.err, "no policy named 'github': " + t.dir() + "/github.yaml does not exist (policies in " +
                                     t.dir() + ": mine)")) << unknown.err;
    auto path = warden({"policy", "show", t.dir() + "/mine.yaml", "--policy-dir", "/nonexistent"});
    EXPECT_EQ(path.exit_code, 0) << path.err;
}

TEST(PolicyDirCommand, RunResolvesNamesBeforeAnythingElse) {
    PolicyFiles t;
    auto r = warden({"run", "--policy", "nosuch", "--policy-dir", t.dir(), "--", "true"});
    EXPECT_EQ(r.exit_code, 64);
    EXPECT_TRUE(has(r.err, "no policy named 'nosuch'")) << r.err;
    auto missing = warden({"run", "--policy", t.dir() + "/nope.yaml", "--", "true"});
    EXPECT_EQ(missing.exit_code, 64);
    EXPECT_TRUE(has(missing.err, "policy file " + t.dir() + "/nope.yaml does not exist")) << missing.err;
}

// ---- help ---------------------------------------------------------------------------------

TEST(PolicyHelp, EveryCommandExplainsItself) {
    auto top = warden({"policy", "--help"});
    EXPECT_EQ(top.exit_code, 0);
    for (const char* sub : {"validate", "explain", "show"}) EXPECT_TRUE(has(top.out, sub)) << top.out;
    auto explain = warden({"policy", "explain", "--help"});
    EXPECT_EQ(explain.exit_code, 0);
    EXPECT_TRUE(has(explain.out, "HOST_OR_IP:PORT[/PROTO]")) << explain.out;
    EXPECT_TRUE(has(explain.out, "0 allowed, 1 denied")) << explain.out;
    auto validate = warden({"policy", "validate", "--help"});
    EXPECT_TRUE(has(validate.out, "file:line:column")) << validate.out;
    EXPECT_TRUE(has(validate.out, "--strict")) << validate.out;
    auto show = warden({"policy", "show", "--help"});
    EXPECT_TRUE(has(show.out, "--json")) << show.out;
    EXPECT_TRUE(has(show.out, "--policy-dir")) << show.out;
    auto run = warden({"run", "--help"});
    EXPECT_TRUE(has(run.out, "--policy-dir")) << run.out;
}

// ---- the filesystem section -----------------------------------------------------------------

namespace {

const char* kFilesystem = R"(name: files
filesystem:
  read_only:
    - /srv/data/
  read_write:
    - /home/alice/project
  hide:
    - /home/alice/project/secrets
)";

}  // namespace

TEST(PolicyFilesystemCommand, ValidateNamesEveryBadPathAtItsPosition) {
    PolicyFiles t;
    std::string file = t.write("bad.yaml",
                               "name: bad\nfilesystem:\n  read_only:\n    - srv/data\n    - /a/../etc\n"
                               "  read_write: [/, /var/lib/mcpwarden/cache]\n  hide:\n    - /srv\n    - /srv\n"
                               "user: \"4294967295\"\n");
    auto r = warden({"policy", "validate", file});
    EXPECT_EQ(r.exit_code, 1);
    for (const std::string& line : {file + ":4:7: filesystem.read_only: 'srv/data' is not an absolute path",
                                    file + ":5:7: filesystem.read_only: '/a/../etc' has a '..' component",
                                    file + ":6:16: filesystem.read_write: '/' is the whole host",
                                    file + ":6:19: filesystem.read_write: '/var/lib/mcpwarden/cache' is in mcpwarden's state directory",
                                    file + ":9:7: filesystem.hide: /srv is listed twice",
                                    file + ":10:7: user '4294967295' is not a valid uid"}) {
        EXPECT_TRUE(has(r.err, line)) << "missing: " << line << "\n" << r.err;
    }
    // A valid section: ok, and a warning for what changes nothing or is missing on this host.
    std::string good = t.write("files.yaml", kFilesystem);
    auto ok = warden({"policy", "validate", good});
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_TRUE(has(ok.out, good + ": ok (files)")) << ok.out;
    EXPECT_TRUE(has(ok.err, "filesystem.read_only: /srv/data does not exist on this host")) << ok.err;
    std::string moot = t.write("moot.yaml", "name: moot\nfilesystem:\n  read_only: [/usr]\n  hide: [/home/x]\n");
    auto m = warden({"policy", "validate", "--strict", moot});
    EXPECT_EQ(m.exit_code, 1);
    EXPECT_TRUE(has(m.err, moot + ":3:3: warning: filesystem.read_only: /usr is read-only without this entry")) << m.err;
    EXPECT_TRUE(has(m.err, moot + ":4:3: warning: filesystem.hide: /home/x is hidden without this entry")) << m.err;
}

TEST(PolicyFilesystemCommand, ShowListsTheView) {
    PolicyFiles t;
    std::string file = t.write("files.yaml", kFilesystem);
    auto text = warden({"policy", "show", file});
    EXPECT_EQ(text.exit_code, 0) << text.err;
    for (const char* part : {"filesystem: the default view and the policy's paths",
                             "  read-only  /  (default: the host's root is read-only)",
                             "  hidden     /home  (default: users' homes are hidden)",
                             "  private    /tmp  (default: a private /tmp, gone with the sandbox)",
                             "  read-only  /srv/data  (policy filesystem.read_only)",
                             "  read-write /home/alice/project  (policy filesystem.read_write)",
                             "  hidden     /home/alice/project/secrets  (policy filesystem.hide)"}) {
        EXPECT_TRUE(has(text.out, part)) << "missing: " << part << "\n" << text.out;
    }
    auto json = warden({"policy", "show", "--json", file});
    auto j = nlohmann::json::parse(json.out);
    EXPECT_EQ(j["filesystem"]["read_only"], nlohmann::json({"/srv/data"}));
    EXPECT_EQ(j["filesystem"]["read_write"], nlohmann::json({"/home/alice/project"}));
    EXPECT_EQ(j["filesystem"]["hide"], nlohmann::json({"/home/alice/project/secrets"}));
    EXPECT_EQ(j["user"], nullptr);
}

TEST(PolicyFilesystemCommand, ExplainPathSaysWhatAndWhy) {
    PolicyFiles t;
    std::string file = t.write("files.yaml", kFilesystem);
    for (const auto& [path, code, summary] : std::vector<std::tuple<std::string, int, std::string>>{
             {"/home/alice/project/src/main.c", 0,
              "/home/alice/project/src/main.c: readable and writable, by read-write /home/alice/project (policy filesystem.read_write)"},
             {"/home/alice/project/secrets/key", 1,
              "/home/alice/project/secrets/key: hidden, by hidden /home/alice/project/secrets (policy filesystem.hide)"},
             {"/home/bob/.ssh/id_rsa", 1, "/home/bob/.ssh/id_rsa: hidden, by hidden /home (default: users' homes are hidden)"},
             {"/usr/bin/node", 0, "/usr/bin/node: readable, not writable, by read-only / (default: the host's root is read-only)"},
             {"/srv//data/x", 0, "/srv/data/x: readable, not writable, by read-only /srv/data (policy filesystem.read_only)"},
             {"/tmp/x", 0, "/tmp/x: readable and writable (private to the sandbox), by private /tmp"},
             {"/var/lib/mcpwarden/cache/other/1879048200", 1, "hidden, by hidden /var/lib/mcpwarden (default:"}}) {
        auto r = warden({"policy", "explain", file, "--path", path});
        EXPECT_EQ(r.exit_code, code) << path << ": " << r.out << r.err;
        EXPECT_TRUE(has(r.out, summary)) << path << ": " << r.out;
    }
    auto j = warden({"policy", "explain", file, "--path", "/home/alice/project/x", "--json"});
    auto parsed = nlohmann::json::parse(j.out);
    EXPECT_EQ(parsed["access"], "read-write");
    EXPECT_EQ(parsed["writable"], true);
    EXPECT_EQ(parsed["rule"]["path"], "/home/alice/project");
    EXPECT_EQ(parsed["rule"]["from_policy"], true);
    auto relative = warden({"policy", "explain", file, "--path", "etc/passwd"});
    EXPECT_EQ(relative.exit_code, 64);
    EXPECT_TRUE(has(relative.err, "--path: 'etc/passwd' is not an absolute path")) << relative.err;
    auto both = warden({"policy", "explain", file, "--path", "/x", "--to", "10.0.0.1:443"});
    EXPECT_EQ(both.exit_code, 64);
}
