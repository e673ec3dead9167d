// SPDX-License-Identifier: Apache-2.0
// The sandbox's private filesystem view (userspace/lib/fs_view.h): what of the host a server
// sees, and what it writes that the host or another sandbox could see.
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "isolation_fs_common.h"
#include "net_fixtures.h"

using namespace harness;
using namespace isofs;
namespace fs = std::filesystem;

// Suite Isolation is shared by several files (issue 11): each defines the fixture exactly like
// this, at namespace scope, so that gtest sees one fixture class.
class Isolation : public harness::KernelTest {};

namespace {

std::string tag() { return std::to_string(::getpid()); }

}  // namespace

// The host's /tmp, /var/tmp, /dev/shm and /home are not the sandbox's: a marker file of the
// host is not there, and what the server writes there never appears on the host and is gone
// with the sandbox.
TEST_F(Isolation, FsHostTmpHomeAndShmAreNotTheSandboxs) {
    HostDir tmp("/tmp", "mw-fs-"), var_tmp("/var/tmp", "mw-fs-"), shm("/dev/shm", "mw-fs-"), home("/home", "mw-fs-");
    std::vector<std::string> markers{tmp.file("marker"), var_tmp.file("marker"), shm.file("marker"), home.file("marker")};
    std::string script;
    for (const auto& m : markers) script += "test -e " + m + " && echo visible " + m + " || echo hidden; ";
    std::string written = "mw-fs-written-" + tag();
    for (const char* dir : {"/tmp", "/var/tmp", "/dev/shm"})
        script += "echo w > " + std::string(dir) + "/" + written + " && echo wrote; ";
    auto r = warden({"run", "--", "sh", "-c", script});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "hidden\nhidden\nhidden\nhidden\nwrote\nwrote\nwrote\n") << r.err;
    for (const char* dir : {"/tmp", "/var/tmp", "/dev/shm"}) {
        std::string host = std::string(dir) + "/" + written;
        EXPECT_FALSE(fs::exists(host)) << host << " reached the host";
        ::unlink(host.c_str());
    }
    // A second sandbox starts with them empty again.
    auto again = warden({"run", "--", "sh", "-c", "ls -A /tmp/" + written + " /var/tmp/" + written + " /dev/shm/" + written + " 2>/dev/null | wc -l"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, "0\n");
}

// The host's root is read-only in the view, even where the host lets everyone write.
TEST_F(Isolation, FsRootIsReadOnly) {
    HostDir open_dir("/var/lib", "mw-fs-open-", 01777);
    auto r = warden({"run", "--", "sh", "-c", "touch " + open_dir.path() + "/x 2>&1; mkdir /mw-fs-" + tag() + " 2>&1; true"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto lines = netfix::split_lines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    for (const auto& line : lines) EXPECT_NE(line.find("Read-only file system"), std::string::npos) << line;
    EXPECT_FALSE(fs::exists(open_dir.path() + "/x"));
    EXPECT_FALSE(fs::exists("/mw-fs-" + tag()));
}

// /root, /run, /etc/mcpwarden, mcpwarden's default state directory, another policy's cache and
// another client's cache cannot be reached; the sandbox's own cache can, read-write.
TEST_F(Isolation, FsHiddenPathsAndOtherCachesAreUnreachable) {
    std::string t = tag();
    std::vector<std::string> markers;
    auto plant = [&](const std::string& path) {
        fs::create_directories(fs::path(path).parent_path());
        std::ofstream(path) << "secret\n";
        ::chmod(path.c_str(), 0644);
        markers.push_back(path);
    };
    bool made_etc = !fs::exists("/etc/mcpwarden");
    bool made_default_state = !fs::exists("/var/lib/mcpwarden");
    plant("/root/mw-fs-" + t);
    plant("/run/mw-fs-" + t);
    plant("/etc/mcpwarden/mw-fs-" + t);
    plant("/var/lib/mcpwarden/mw-fs-" + t);
    // Caches a sandbox of the same uid would be allowed to open by the file modes alone.
    std::string other_policy = state_dir() + "/cache/fs-other/65534", other_client = state_dir() + "/cache/fs-hidden/65534-for-4242";
    for (const auto& dir : {other_policy, other_client}) {
        plant(dir + "/secret");
        ::chown(dir.c_str(), 65534, 65534);
        ::chown((dir + "/secret").c_str(), 65534, 65534);
    }
    struct Cleanup {
        std::vector<std::string>& files;
        bool etc, state;
        std::vector<std::string> dirs;
        ~Cleanup() {
            for (const auto& f : files) ::unlink(f.c_str());
            std::error_code ec;
            for (const auto& d : dirs) fs::remove_all(d, ec);
            if (etc) fs::remove("/etc/mcpwarden", ec);
            if (state) fs::remove_all("/var/lib/mcpwarden", ec);
        }
    } cleanup{markers, made_etc, made_default_state, {state_dir() + "/cache/fs-other", other_client}};

    std::string script;
    for (const auto& m : markers) script += "cat " + m + " 2>/dev/null || echo unreachable; ";
    script += "(ls -A /root; ls -A /run; ls -A /etc/mcpwarden) | grep -c . ; ";
    script += "echo mine > $XDG_CACHE_HOME/mw-own-" + t + " && echo wrote";
    auto r = warden({"run", "--policy", netfix::write_policy("fs-hidden", ""), "--", "sh", "-c", script});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto lines = netfix::split_lines(r.out);
    ASSERT_EQ(lines.size(), markers.size() + 2) << r.out << r.err;
    for (std::size_t i = 0; i < markers.size(); ++i) EXPECT_EQ(lines[i], "unreachable") << markers[i];
    EXPECT_EQ(lines[markers.size()], "0") << "/root, /run and /etc/mcpwarden are empty";
    EXPECT_EQ(lines.back(), "wrote");
    std::string own;  // whichever uid's the sandbox's is: the other client's is planted beside it
    for (const auto& e : fs::directory_iterator(state_dir() + "/cache/fs-hidden")) {
        if (fs::exists(e.path() / ("mw-own-" + t))) own = (e.path() / ("mw-own-" + t)).string();
    }
    ASSERT_FALSE(own.empty()) << "the sandbox's own cache is the host's directory";
    std::string text;
    mcpwarden::read_file(own, text);
    EXPECT_EQ(text, "mine\n");
    ::unlink(own.c_str());
}

// /dev holds the usual character devices and shm, nothing else of the host's.
TEST_F(Isolation, FsDevIsMinimal) {
    auto r = warden({"run", "--", "sh", "-c",
                     "ls -A /dev | tr '\\n' ' '; echo; echo x > /dev/null && echo null-ok; "
                     "head -c 16 /dev/urandom | wc -c; head -c 4 /dev/zero | wc -c; "
                     "echo s > /dev/shm/x && cat /dev/shm/x; touch /dev/mw 2>/dev/null || echo dev-read-only"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "fd full null random shm stderr stdin stdout urandom zero \nnull-ok\n16\n4\ns\ndev-read-only\n");
}

// What npx, node, python and Go servers need: HOME and the cache writable and executable,
// /proc/self/exe, /dev/shm usable by the unprivileged server, the stdin/stdout links.
TEST_F(Isolation, FsServersFindWhatTheyNeed) {
    auto r = warden({"run", "--", "sh", "-c",
                     "for d in $HOME $TMPDIR $XDG_CACHE_HOME /tmp; do printf '#!/bin/sh\\necho ran\\n' > $d/x.sh && "
                     "chmod +x $d/x.sh && $d/x.sh; done; test -n \"$(readlink /proc/self/exe)\" && echo exe; "
                     "id -u > /dev/shm/me && test -O /dev/shm/me && echo shm; test -L /dev/stdout && echo out"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "ran\nran\nran\nran\nexe\nshm\nout\n") << r.err;
}

// SysV IPC: a segment of the host, or of another sandbox, is not there; the one a sandbox
// makes is gone with it.
TEST_F(Isolation, FsSysvSharedMemoryIsPrivate) {
    key_t host_key = static_cast<key_t>(0x6d770000 + (::getpid() & 0xffff)), sandbox_key = host_key + 0x10000;
    int id = ::shmget(host_key, 4096, IPC_CREAT | IPC_EXCL | 0666);
    ASSERT_GE(id, 0) << std::strerror(errno);
    struct Remove {
        int id;
        ~Remove() { ::shmctl(id, IPC_RMID, nullptr); }
    } remove{id};
    std::string fp = program("fsprobe");
    Background holder({"--", fp, "shm-create", std::to_string(sandbox_key)});
    ASSERT_EQ(holder.line(), "created");
    auto other = warden({"run", "--", "sh", "-c", fp + " shm-get " + std::to_string(host_key) + "; " + fp +
                                                     " shm-get " + std::to_string(sandbox_key)});
    EXPECT_EQ(other.out, "ENOENT\nENOENT\n") << other.err;
    EXPECT_LT(::shmget(sandbox_key, 0, 0), 0) << "the sandbox's segment is in the host's namespace";
    EXPECT_EQ(holder.finish(), 0);
}

// The policy's filesystem section: read_only is readable and not writable, read_write is the
// host's directory, hide covers a path inside either; the rest of /home stays hidden.
TEST_F(Isolation, FsPolicyReadOnlyReadWriteAndHide) {
    HostDir base("/home", "mw-fs-policy-");
    std::string ro = base.path() + "/ro", rw = base.path() + "/rw", other = base.path() + "/other";
    for (const auto& d : {ro, rw, rw + "/secret", other}) {
        fs::create_directory(d);
        ::chmod(d.c_str(), 0777);
    }
    for (const auto& f : {ro + "/file", ro + "/hidden-file", rw + "/secret/key", other + "/file"}) {
        std::ofstream(f) << "data\n";
        ::chmod(f.c_str(), 0666);
    }
    mcpwarden::Policy policy;
    policy.name = "fs-policy";
    policy.filesystem.read_only = {ro};
    policy.filesystem.read_write = {rw};
    policy.filesystem.hide = {rw + "/secret", ro + "/hidden-file"};
    std::string out = run_with_policy(policy, "cat " + ro + "/file; touch " + ro + "/new 2>/dev/null || echo ro-refused; echo w > " + rw +
                                                  "/new && echo wrote; ls -A " + rw + "/secret | grep -c .; cat " + ro +
                                                  "/hidden-file 2>/dev/null || echo hidden; test -e " + other +
                                                  " || echo other-hidden; true");
    EXPECT_EQ(out, "data\nro-refused\nwrote\n0\nhidden\nother-hidden\n");
    EXPECT_FALSE(fs::exists(ro + "/new"));
    std::string text;
    mcpwarden::read_file(rw + "/new", text);
    EXPECT_EQ(text, "w\n");
    EXPECT_TRUE(fs::exists(rw + "/secret/key")) << "a hide never touches the host";
}

// A path that cannot be set up as asked refuses the run (exit 125 from the CLI): it names the
// path and why. Nothing of the sandbox is left.
TEST_F(Isolation, FsPathThatCannotBeSetUpRefusesTheRun) {
    mcpwarden::Policy policy;
    policy.name = "fs-refused";
    auto refused = [&](const std::string& needle) {
        try {
            run_with_policy(policy, "echo started");
        } catch (const mcpwarden::Error& e) {
            EXPECT_EQ(e.kind(), mcpwarden::ErrorKind::sandbox_unavailable);
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
            return;
        }
        ADD_FAILURE() << "the run started (" << needle << ")";
    };
    policy.filesystem.read_only = {"/nonexistent-mw-fs-" + tag()};
    refused("filesystem.read_only path /nonexistent-mw-fs-" + tag() + " does not exist on the host");
    policy.filesystem.read_only.clear();
    policy.filesystem.read_write = {state_dir() + "/cache"};
    refused("lies in " + state_dir());
}

// A command the view hides cannot run: the run says which path hides it and what to do.
TEST_F(Isolation, FsCommandInAHiddenPathIsRefused) {
    HostDir tmp("/tmp", "mw-fs-cmd-"), run("/run", "mw-fs-cmd-");
    for (const auto* dir : {&tmp, &run}) {
        std::string cmd = dir->path() + "/fsprobe";
        fs::copy_file(program("fsprobe"), cmd);
        ::chmod(cmd.c_str(), 0755);
        auto r = warden({"run", "--", cmd, "shm-get", "1"});
        EXPECT_EQ(r.exit_code, 125) << r.out << r.err;
        std::string top = dir == &tmp ? "/tmp" : "/run";
        EXPECT_NE(r.err.find("the command " + cmd + " lies in " + top), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("filesystem.read_only"), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "");
    }
}
