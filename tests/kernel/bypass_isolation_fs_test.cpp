// SPDX-License-Identifier: Apache-2.0
// The bypass suite's filesystem attempts (docs/security.md, part "isolation"): what a server
// could read or write of the host's files, or share with another sandbox through the
// filesystem and SysV IPC. Each has a control showing it works without the sandbox's view.
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "bypass_common.h"
#include "isolation_fs_common.h"

using namespace bypass;
using isofs::Background;
using isofs::HostDir;
namespace fs = std::filesystem;

namespace {

std::string tag() { return std::to_string(::getpid()); }

}  // namespace

TEST_F(Bypass, WriteIntoAnotherPolicysCache) {
    part("isolation");
    attempt("write a file into another policy's persistent cache (<state>/cache/<other>/..., where its next npx run looks)");
    // The victim's cache, owned by the uid the attacker runs as: file modes alone allow it.
    std::string victim = state_dir() + "/cache/bypass-victim/65534";
    fs::create_directories(victim + "/npm");
    for (const auto& d : {victim, victim + "/npm"}) ::chown(d.c_str(), 65534, 65534);
    struct Cleanup {
        std::string dir;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{state_dir() + "/cache/bypass-victim"};
    std::string target = victim + "/npm/planted-" + tag();
    auto control = as_nobody({"sh", "-c", "echo x > " + target + "-control && echo ok"});
    EXPECT_EQ(control.out, "ok\n") << "control: the victim's uid writes its cache " << control.err;
    auto s = sandboxed(lo_policy(), "echo evil > " + target + " 2>/dev/null && echo wrote || echo refused; ls " + victim +
                                        " 2>/dev/null | grep -c .");
    EXPECT_EQ(s.result.out, "refused\n0\n") << s.result.err;
    EXPECT_FALSE(fs::exists(target));
    outcome(join(s.lines) + ": only the sandbox's own cache is in its view (the state directory is an empty tmpfs)");
}

TEST_F(Bypass, ReadAFileInHome) {
    part("isolation");
    attempt("read a world-readable file under /home (a user's checkout, dotfiles)");
    HostDir home("/home", "mw-byp-");
    std::string file = home.file("notes.txt", "private\n", 0644);
    auto control = as_nobody({"cat", file});
    EXPECT_EQ(control.out, "private\n") << "control: nobody reads it outside a sandbox " << control.err;
    auto s = sandboxed(lo_policy(), "cat " + file + " 2>/dev/null || echo unreachable; ls -A /home | grep -c .");
    EXPECT_EQ(s.result.out, "unreachable\n0\n") << s.result.err;
    outcome(join(s.lines) + ": /home is an empty tmpfs in the sandbox's view");
}

TEST_F(Bypass, WriteTheHostsTmpAndDevShm) {
    part("isolation");
    attempt("write into the host's /tmp, /var/tmp and /dev/shm (plant files other programs pick up)");
    std::string name = "mw-byp-planted-" + tag();
    std::vector<std::string> paths{"/tmp/" + name, "/var/tmp/" + name, "/dev/shm/" + name};
    struct Cleanup {
        std::vector<std::string> paths;
        ~Cleanup() {
            for (const auto& p : paths) ::unlink(p.c_str());
        }
    } cleanup{paths};
    auto control = as_nobody({"sh", "-c", "echo x > /tmp/" + name + "-control && rm /tmp/" + name + "-control && echo ok"});
    EXPECT_EQ(control.out, "ok\n") << "control: nobody writes the host's /tmp " << control.err;
    std::string script;
    for (const auto& p : paths) script += "echo planted > " + p + "; ";
    auto s = sandboxed(lo_policy(), script + "echo done");
    EXPECT_EQ(s.result.out, "done\n") << s.result.err;
    std::vector<std::string> seen;
    for (const auto& p : paths) {
        EXPECT_FALSE(fs::exists(p)) << p;
        seen.push_back(p + (fs::exists(p) ? " reached the host" : " not on the host"));
    }
    outcome(join(seen) + ": the sandbox's /tmp, /var/tmp and /dev/shm are its own tmpfs, gone with it");
}

TEST_F(Bypass, ShareASysvSegmentWithAnotherSandbox) {
    part("isolation");
    attempt("share a SysV shared memory segment with another sandbox (a covert channel past egress)");
    key_t key = static_cast<key_t>(0x6d780000 + (::getpid() & 0xffff)), control_key = key + 0x10000;
    std::string fp = program("fsprobe");
    int id = ::shmget(control_key, 4096, IPC_CREAT | IPC_EXCL | 0666);
    ASSERT_GE(id, 0) << std::strerror(errno);
    struct Remove {
        int id;
        ~Remove() { ::shmctl(id, IPC_RMID, nullptr); }
    } remove{id};
    auto control = as_nobody({fp, "shm-get", std::to_string(control_key)});
    EXPECT_EQ(control.out, "found\n") << "control: processes of one IPC namespace share segments " << control.err;
    Background holder({"--policy", open_policy(), "--", fp, "shm-create", std::to_string(key)});
    ASSERT_EQ(holder.line(), "created");
    auto s = sandboxed(write_policy("bypass-deny", "egress:\n  allow: []\n"),
                       fp + " shm-get " + std::to_string(key) + "; " + fp + " shm-get " + std::to_string(control_key));
    EXPECT_EQ(s.result.out, "ENOENT\nENOENT\n") << s.result.err;
    EXPECT_EQ(holder.finish(), 0);
    outcome(join(s.lines) + " for the other sandbox's segment and the host's: each sandbox has an IPC namespace of its own");
}

TEST_F(Bypass, PathnameUnixSocketOfAnotherSandbox) {
    part("isolation");
    attempt("a deny-all sandbox connects to a pathname Unix socket that a sandbox with egress listens on "
            "(its /tmp, /dev/shm, cache) to send data out through it");
    std::string fp = program("fsprobe"), np = program("netprobe");
    Background relay({"--policy", open_policy(), "--", "sh", "-c",
                      "echo $XDG_CACHE_HOME; " + fp + " unix-listen /tmp/relay.sock <&0 & " + fp +
                          " unix-listen /dev/shm/relay.sock <&0 & " + fp + " unix-listen $XDG_CACHE_HOME/relay.sock <&0; wait"});
    std::string cache = relay.line();
    ASSERT_FALSE(cache.empty());
    for (int i = 0; i < 3; ++i) ASSERT_EQ(relay.line(), "listening");
    // The cache is the host's directory: from the host (root: the cache is its pair's uid's,
    // 0700), the socket is there.
    auto control = command({np, "unix-connect", cache + "/relay.sock"});
    EXPECT_EQ(control.out, "ok\n") << "control: the socket accepts outside the sandbox " << control.err;
    EXPECT_EQ(relay.line(), "accepted");
    std::string script;
    for (const auto& p : {std::string("/tmp/relay.sock"), std::string("/dev/shm/relay.sock"), cache + "/relay.sock"})
        script += np + " unix-connect " + p + "; ";
    auto s = sandboxed(write_policy("bypass-deny", "egress:\n  allow: []\n"), script);
    EXPECT_EQ(s.result.out, "ENOENT\nENOENT\nENOENT\n") << s.result.err;
    EXPECT_EQ(relay.finish(), 0);
    ::unlink((cache + "/relay.sock").c_str());
    outcome(join(s.lines) + ": another sandbox's /tmp, /dev/shm and cache are not in the view");
}

TEST_F(Bypass, ReadEtcMcpwarden) {
    part("isolation");
    attempt("read mcpwarden's configuration under /etc/mcpwarden (the agent's clients, policies naming secret files)");
    bool made = !fs::exists("/etc/mcpwarden");
    fs::create_directories("/etc/mcpwarden");
    std::string file = "/etc/mcpwarden/mw-byp-" + tag() + ".yaml";
    std::ofstream(file) << "clients: [1000]\n";
    ::chmod(file.c_str(), 0644);
    struct Cleanup {
        std::string file;
        bool made;
        ~Cleanup() {
            ::unlink(file.c_str());
            std::error_code ec;
            if (made) fs::remove("/etc/mcpwarden", ec);
        }
    } cleanup{file, made};
    auto control = as_nobody({"cat", file});
    EXPECT_EQ(control.out, "clients: [1000]\n") << "control: nobody reads it outside a sandbox " << control.err;
    auto s = sandboxed(lo_policy(), "cat " + file + " 2>/dev/null || echo unreachable; ls -A /etc/mcpwarden | grep -c .");
    EXPECT_EQ(s.result.out, "unreachable\n0\n") << s.result.err;
    outcome(join(s.lines) + ": /etc/mcpwarden is an empty tmpfs in the sandbox's view");
}

TEST_F(Bypass, UnmountTheViewInAUserNamespace) {
    part("isolation");
    attempt("as root of a user and mount namespace of its own (unshare -rm), unmount the tmpfs hiding /home, "
            "remount / read-write, and read a file of /home");
    HostDir home("/home", "mw-byp-");
    std::string file = home.file("notes.txt", "private\n", 0644);
    auto s = sandboxed(lo_policy(), "unshare -rm sh -c 'umount /home 2>/dev/null && echo unmounted || echo umount-refused; "
                                    "mount -o remount,rw / 2>/dev/null && echo remounted || echo remount-refused; "
                                    "cat " + file + " 2>/dev/null || echo unreachable' || echo unshare-refused");
    std::string out = s.result.out;
    EXPECT_TRUE(out == "umount-refused\nremount-refused\nunreachable\n" || out == "unshare-refused\n") << out << s.result.err;
    outcome(join(s.lines) + (out == "unshare-refused\n"
                                 ? ": no user namespace for the server"
                                 : ": the view's mounts are locked in a less privileged namespace (the kernel refuses to unmount or "
                                   "remount them)"));
}
