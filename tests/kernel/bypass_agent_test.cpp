// SPDX-License-Identifier: Apache-2.0
// The bypass suite's hardening part for the agent (docs/security.md): a hostile local user, or
// a client of the agent, trying to exhaust it, starve the other clients, or learn through it
// what only root may see. A real `mcpwarden agent` on a temporary socket, real unprivileged
// users (made here, removed at the end), real sandboxes.
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "agent_client.h"
#include "agent_figures.h"
#include "agent_process.h"
#include "bypass_common.h"
#include "fd.h"

using namespace harness;
using namespace bypass;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// An agent whose configuration lists one user (`listed`) for the policy "sleeper"; `unlisted`
// exists on the host but not in the configuration. Both users are removed at the end.
class AgentUnderAttack {
public:
    explicit AgentUnderAttack(const std::string& limits) {
        std::string tag = std::to_string(::getpid() % 100000);
        listed = agentfig::make_user("mwbl" + tag);
        unlisted = agentfig::make_user("mwbu" + tag);
        char tmpl[] = "/tmp/mcpwarden-bypass-agent-XXXXXX";
        if (::mkdtemp(tmpl)) dir = tmpl;
        ::chmod(dir.c_str(), 0755);
        fs::create_directories(dir + "/policies");
        std::ofstream(dir + "/policies/sleeper.yaml") << "name: sleeper\nlimits: { pids: 16 }\n";
        socket = dir + "/agent.sock";
        std::ofstream(dir + "/agent.yaml") << "socket: " << socket << "\npolicy_dir: " << dir << "/policies\nstate_dir: "
                                           << state_dir() << "\naudit: " << dir << "/audit.jsonl\nclients:\n  - uid: "
                                           << listed.uid << "\n    policies: [sleeper]\nlimits: " << limits << "\n";
        started = agent.start(dir + "/agent.yaml", socket, dir + "/agent.log");
    }
    ~AgentUnderAttack() {
        bool timed_out = false;
        agent.stop(SIGTERM, &timed_out);
        EXPECT_FALSE(timed_out) << log();
        std::error_code ec;
        fs::remove_all(dir, ec);
        for (const auto* u : {&listed, &unlisted}) command({"userdel", u->name});
    }
    std::string log() const {
        std::string s;
        mcpwarden::read_file(dir + "/agent.log", s);
        return s;
    }
    mcpwarden::AgentClient root_client() const {
        auto c = mcpwarden::AgentClient::connect(socket);
        if (!c) throw std::runtime_error("no agent");
        return std::move(*c);
    }
    agentfig::User listed, unlisted;
    std::string dir, socket;
    AgentProcess agent;
    bool started = false;
};

std::string octal(mode_t m) {
    char b[8];
    std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
    return b;
}

json sleeper(const json& id, const std::string& seconds = "30") {
    return {{"v", 1}, {"id", id}, {"op", "create"}, {"policy", "sleeper"}, {"command", {"sleep", seconds}}, {"stdio", "null"}};
}

// The final answer to `id` (events skipped); null when none came in time.
json answer(mcpwarden::AgentClient& c, const json& id, int timeout_ms = 20000) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(nullptr, 200);
        if (m && (*m)["id"] == id && m->contains("ok")) return *m;
        if (c.eof()) break;
    }
    return nullptr;
}

// The next "started" event or final answer of `id`.
json started_or_answer(mcpwarden::AgentClient& c, const json& id, int timeout_ms = 20000) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < until) {
        auto m = c.receive(nullptr, 200);
        if (m && (*m)["id"] == id && (m->contains("ok") || m->value("event", "") == "started")) return *m;
        if (c.eof()) break;
    }
    return nullptr;
}

// Root's sandbox of `sleep 30` (request id 1) on `c`: its name once started, "" otherwise.
std::string start_sleeper(mcpwarden::AgentClient& c) {
    c.send(sleeper(1));
    json s = started_or_answer(c, 1);
    if (s.value("event", "") != "started") ADD_FAILURE() << s.dump();
    return s.value("sandbox", "");
}

}  // namespace

TEST_F(Bypass, AgentStdioSetupFailureLeaksNothing) {
    part("hardening");
    attempt("100 creates whose stdio cannot be relayed (stdin a regular file, stdout and stderr a TCP socket), "
            "to exhaust the root agent's descriptors and the host's pids with zombies");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    auto c = a.root_client();
    std::string file = a.dir + "/stdin.txt";
    std::ofstream(file) << "x\n";
    mcpwarden::UniqueFd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    mcpwarden::UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int fds[3] = {in.get(), tcp.get(), tcp.get()};
    auto once = [&](int id) {
        json r = {{"v", 1}, {"id", id}, {"op", "create"}, {"policy", "sleeper"}, {"command", {"true"}}, {"stdio", "pass"}};
        c.send(r, fds);
        return answer(c, id);
    };
    json first = once(1);  // what a first create opens once (BPF objects, ...) is not a leak
    ASSERT_FALSE(first.is_null()) << a.log();
    EXPECT_EQ(first["ok"], false) << first.dump();
    auto before = agentfig::figures(a.agent.pid());
    int answered = 0;
    std::string kind;
    for (int i = 0; i < 100; ++i) {
        json m = once(100 + i);
        if (m.is_object() && m["ok"] == false) ++answered;
        if (m.is_object()) kind = m["error"].value("kind", "");
    }
    auto after = agentfig::figures(a.agent.pid());
    EXPECT_EQ(answered, 100);
    // A leak per request is 4 descriptors each (400 here); what the agent opens once on the way
    // (its identity store, the init's descriptor) is a few, whichever request comes first.
    EXPECT_LE(after.fds, before.fds + 8) << "descriptors of the agent: " << before.fds << " -> " << after.fds;
    EXPECT_EQ(after.zombies, 0) << "unreaped children of the agent";
    outcome("each refused (" + kind + "); agent descriptors " + std::to_string(before.fds) + " -> " +
            std::to_string(after.fds) + ", zombies " + std::to_string(after.zombies));
}

TEST_F(Bypass, AgentUnlistedUsersIdleConnectionsBlockNobody) {
    part("hardening");
    attempt("a user the agent's clients: does not list opens 4,096 connections and holds them idle, "
            "so that a listed client is refused");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    int served = -1;
    char all_refused = agentfig::while_held(
        a.unlisted,
        [&] {
            std::vector<mcpwarden::AgentClient> held;
            int refused = 0;
            for (int i = 0; i < 4096; ++i) {
                auto u = mcpwarden::AgentClient::connect(a.socket);
                if (!u) return 'c';
                held.push_back(std::move(*u));
            }
            // Every one was answered forbidden and closed by the agent (none is served).
            for (auto& u : held) {
                auto m = u.receive(nullptr, 10000);
                if (m && (*m)["error"]["kind"] == "forbidden" && !u.receive(nullptr, 10000) && u.eof()) ++refused;
            }
            return refused == 4096 ? 'y' : 'n';
        },
        [&] {  // while the unlisted user holds its 4,096 sockets
            served = agentfig::as_child(a.listed, [&] {
                auto c = mcpwarden::AgentClient::connect(a.socket);
                if (!c) return 2;
                c->send({{"v", 1}, {"id", 1}, {"op", "list"}});
                json m = answer(*c, 1, 10000);
                return m.is_object() && m["ok"] == true ? 0 : 3;
            });
        },
        8192);
    EXPECT_EQ(all_refused, 'y') << "an unlisted connection was not answered forbidden and closed";
    EXPECT_EQ(served, 0) << a.log().substr(0, 2000);
    outcome(std::string("each of the 4,096 answered forbidden and closed at once; the listed client ") +
            (served == 0 ? "was served" : "was NOT served"));
}

TEST_F(Bypass, AgentListedUserCannotHoldConnections) {
    part("hardening");
    attempt("a listed user opens more connections than its cap and leaves some idle without a request");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8, max_connections_per_uid: 8, idle_timeout: 3s }");
    ASSERT_TRUE(a.started) << a.log();
    int rc = agentfig::as_child(a.listed, [&] {
        std::vector<mcpwarden::AgentClient> held;
        for (int i = 0; i < 8; ++i) {
            auto u = mcpwarden::AgentClient::connect(a.socket);
            if (!u) return 2;
            held.push_back(std::move(*u));
        }
        auto ninth = mcpwarden::AgentClient::connect(a.socket);
        if (!ninth) return 3;
        auto m = ninth->receive(nullptr, 10000);
        if (!m || (*m)["error"]["kind"] != "busy" || (*m)["error"]["limit_name"] != "max_connections_per_uid") return 4;
        // One of the eight waits for its sandbox: it stays; the idle ones are closed.
        held[0].send(sleeper(1, "4"));
        for (std::size_t i = 1; i < held.size(); ++i) {
            auto closed = held[i].receive(nullptr, 20000);
            if (!closed || (*closed)["error"]["limit_name"] != "idle_timeout" || held[i].receive(nullptr, 10000) ||
                !held[i].eof())
                return 5;
        }
        json done = answer(held[0], 1, 30000);
        if (!done.is_object() || done["ok"] != true) return 6;
        // With the idle ones gone, the user connects again.
        held.clear();
        auto again = mcpwarden::AgentClient::connect(a.socket);
        if (!again) return 7;
        again->send({{"v", 1}, {"id", 2}, {"op", "list"}});
        json l = answer(*again, 2, 10000);
        return l.is_object() && l["ok"] == true ? 0 : 8;
    });
    EXPECT_EQ(rc, 0) << a.log().substr(0, 3000);
    outcome(rc == 0 ? "the 9th connection answered busy (max_connections_per_uid); the idle ones closed after "
                      "idle_timeout, the one with a sandbox kept its report"
                    : "step " + std::to_string(rc) + " failed");
}

TEST_F(Bypass, AgentOneClientCannotTakeEverySlot) {
    part("hardening");
    attempt("one client creates long-running sandboxes until every slot of max_sandboxes is taken");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 4, max_per_client: 2, queue_length: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    auto c = a.root_client();
    json m;
    char capped = agentfig::while_held(
        a.listed,
        [&] {
            auto h = mcpwarden::AgentClient::connect(a.socket);
            if (!h) return 'c';
            int started = 0, refused = 0;
            for (int i = 1; i <= 4; ++i) {
                h->send(sleeper(i));
                json s = started_or_answer(*h, i);
                if (s.value("event", "") == "started") ++started;
                else if (s.is_object() && s["error"]["limit_name"] == "max_per_client") ++refused;
            }
            return started == 2 && refused == 2 ? 'y' : 'n';
        },
        [&] {  // another client (root here) still gets a slot at once
            c.send(sleeper(1, "0"));
            m = started_or_answer(c, 1);
        });  // then the hog disconnects: its sandboxes end
    EXPECT_EQ(capped, 'y') << "the client got more than max_per_client " << a.log().substr(0, 2000);
    EXPECT_EQ(m.value("event", ""), "started") << m.dump();
    answer(c, 1);
    outcome(std::string("2 started, 2 answered busy (max_per_client); another client ") +
            (m.value("event", "") == "started" ? "started at once" : "was not served"));
}

TEST_F(Bypass, AgentSignalOverflowIsRefused) {
    part("hardening");
    attempt("kill with signal 4294967305 (9 once truncated to 32 bits), to pass the 1..64 check");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    auto c = a.root_client();
    std::string name = start_sleeper(c);
    ASSERT_FALSE(name.empty()) << a.log();
    auto k = a.root_client();
    k.send({{"v", 1}, {"id", 2}, {"op", "kill"}, {"sandbox", name}, {"signal", 4294967305ull}});
    json refused = answer(k, 2);
    k.send({{"v", 1}, {"id", 3}, {"op", "inspect"}, {"sandbox", name}});
    json still = answer(k, 3);
    EXPECT_EQ(refused["error"]["kind"], "input_invalid") << refused.dump();
    EXPECT_EQ(refused["error"]["field"], "signal") << refused.dump();
    EXPECT_EQ(still["result"]["state"], "running") << still.dump();
    k.send({{"v", 1}, {"id", 4}, {"op", "kill"}, {"sandbox", name}, {"signal", 9}});
    EXPECT_EQ(answer(k, 4)["ok"], true);
    EXPECT_EQ(answer(c, 1)["result"]["report"]["signal"], 9);
    outcome("input_invalid (field signal); the sandbox kept running until a valid kill");
}

TEST_F(Bypass, AgentCommandLookupRevealsNoRootOnlyFile) {
    part("hardening");
    attempt("a client names commands inside a directory only root may search, to learn from the agent's "
            "answers which files exist there");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    std::string hidden = a.dir + "/root-only";
    fs::create_directories(hidden);
    ::chmod(hidden.c_str(), 0700);
    fs::copy_file("/bin/true", hidden + "/present");
    ::chmod((hidden + "/present").c_str(), 0755);
    std::string answers[2], out = a.dir + "/answers";
    fs::create_directories(out);
    ::chmod(out.c_str(), 01777);  // the client writes what it was answered there
    int rc = agentfig::as_child(a.listed, [&] {
        auto c = mcpwarden::AgentClient::connect(a.socket);
        if (!c) return 2;
        int i = 0;
        for (const char* f : {"present", "absent"}) {
            json r = sleeper(i);
            r["command"] = {hidden + "/" + f};
            c->send(r);
            json m = answer(*c, i);
            std::string text = m.is_object() ? m["error"].value("kind", "?") + ": " + m["error"].value("message", "?") : "none";
            auto at = text.find(f);  // the answers, less the name asked for
            if (at != std::string::npos) text.erase(at, std::strlen(f));
            std::ofstream(out + "/" + std::to_string(i)) << text;
            ++i;
        }
        return 0;
    });
    ASSERT_EQ(rc, 0);
    for (int i = 0; i < 2; ++i) mcpwarden::read_file(out + "/" + std::to_string(i), answers[i]);
    EXPECT_EQ(answers[0], answers[1]) << "the answers tell an existing root-only file from a missing one";
    EXPECT_NE(answers[0].find("usage"), std::string::npos) << answers[0];
    outcome("the same answer for both: " + answers[0].substr(0, 120));
}

TEST_F(Bypass, AgentRecordsAndAuditAreNotWorldReadable) {
    part("hardening");
    attempt("a local user reads the agent's sandbox records and audit file, which show every client's commands");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    auto c = a.root_client();
    std::string name = start_sleeper(c);
    ASSERT_FALSE(name.empty()) << a.log();
    std::string record = state_dir() + "/agent/sandboxes/" + name + ".json";
    std::string audit = a.dir + "/audit.jsonl";
    int rc = agentfig::as_child(a.unlisted, [&] {
        int readable = 0;
        for (const auto& f : {record, audit}) {
            mcpwarden::UniqueFd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
            if (fd) ++readable;
        }
        return readable;
    });
    struct stat rs {}, as {};
    EXPECT_EQ(::stat(record.c_str(), &rs), 0);
    EXPECT_EQ(::stat(audit.c_str(), &as), 0);
    EXPECT_EQ(rs.st_mode & 0077, 0u) << std::oct << rs.st_mode;
    EXPECT_EQ(as.st_mode & 0007, 0u) << std::oct << as.st_mode;
    EXPECT_EQ(rc, 0) << "files another user could read";
    auto k = a.root_client();
    k.send({{"v", 1}, {"id", 2}, {"op", "kill"}, {"sandbox", name}});
    answer(k, 2);
    answer(c, 1);
    outcome("record " + octal(rs.st_mode) + ", audit " + octal(as.st_mode) + "; the other user opened neither");
}

TEST_F(Bypass, AgentAuditFlood) {
    part("hardening");
    attempt("a sandbox of the agent connects to a denied address in a tight loop for 3 s, to make the root agent "
            "spend its CPU and the disk on audit (it once spent 0.9 of a core on a sandbox limited to 0.25)");
    REQUIRE_ROOT();
    AgentUnderAttack a("{ max_sandboxes: 8 }");
    ASSERT_TRUE(a.started) << a.log();
    auto c = a.root_client();
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    mcpwarden::UniqueFd from(out[0]), to(out[1]);
    mcpwarden::UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    int fds[3] = {null.get(), to.get(), null.get()};
    c.send({{"v", 1}, {"id", 1}, {"op", "create"}, {"policy", "sleeper"}, {"stdio", "pass"},
            {"command", {program("sysprobe"), "flood-connect", "127.0.0.7", "9", "3"}}},
           fds);
    to.reset();
    // From the start of the server to the flood's end (sysprobe prints its figures then): what
    // the flood costs, not what a sandbox's setup and teardown do (the agent's first create
    // loads its BPF objects, seconds under emulation).
    json s = started_or_answer(c, 1);
    ASSERT_EQ(s.value("event", ""), "started") << s.dump() << a.log();
    double cpu_before = cpu_seconds(a.agent.pid());
    auto began = std::chrono::steady_clock::now();
    std::string figures(128, '\0');
    pollfd p{from.get(), POLLIN, 0};
    ssize_t n = ::poll(&p, 1, 30000) == 1 ? ::read(from.get(), figures.data(), figures.size()) : -1;
    double cpu = cpu_seconds(a.agent.pid()) - cpu_before;
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    figures.resize(n > 0 ? static_cast<size_t>(n) : 0);
    json done = answer(c, 1, 30000);
    ASSERT_EQ(done["ok"], true) << done.dump() << a.log();
    unsigned long long tried = 0, denied = 0;
    std::istringstream(figures) >> tried >> denied;
    const json& report = done["result"]["report"];
    struct stat st {};
    ::stat((a.dir + "/audit.jsonl").c_str(), &st);
    EXPECT_GT(denied, 10000u) << "the flood was too small to show anything: " << figures;
    EXPECT_EQ(report.value("egress_denied", 0ull), denied) << "the report's count is exact " << report.dump();
    // The kernel rate-limits the events (docs/security.md, "Bounded costs"): a denial over the
    // limit never wakes the agent.
    EXPECT_LT(cpu, 0.2 * wall) << cpu << " s of the agent's CPU in " << wall << " s";
    EXPECT_LT(st.st_size, 512 * 1024) << "audit file of " << st.st_size << " bytes";
    char figure[200];
    std::snprintf(figure, sizeof figure,
                  "%llu denials in 3 s: the agent used %.2f s of CPU in %.1f s (%.0f%% of a core), its audit file "
                  "%lld KiB; the report's count exact",
                  denied, cpu, wall, 100 * cpu / wall, static_cast<long long>(st.st_size / 1024));
    outcome(figure);
}
