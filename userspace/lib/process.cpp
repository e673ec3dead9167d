// SPDX-License-Identifier: Apache-2.0
#include "process.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <mutex>
#include <optional>
#include <filesystem>
#include <sstream>

#include "error.h"
#include "identity.h"
#include "fs_view.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace mcpwarden {

UserIdentity resolve_user(const std::string& name) {
    std::string why;
    auto account = check_fixed_account(name, &why);
    if (!account) {
        if (why.empty()) {
            why = "unknown user '" + name + "' (give a user name from /etc/passwd or a numeric uid)";
        }
        throw Error(ErrorKind::usage, why, {{"user", name}});
    }
    return {account->name, account->uid, account->gid};
}

std::string resolve_executable(const std::string& command, const std::string& path_var) {
    if (command.empty()) throw Error(ErrorKind::usage, "no command given");
    auto usable = [](const std::string& p) {
        struct stat st {};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
    };
    if (command.find('/') != std::string::npos) {
        if (!usable(command)) {
            throw Error(ErrorKind::usage, "command '" + command + "' is not an executable file",
                        {{"command", command}});
        }
        // A relative path means the caller's directory: the server starts in its workspace,
        // where ./server would not be found, and the view's checks need the real place.
        std::error_code ec;
        auto absolute = std::filesystem::absolute(command, ec);
        return ec ? command : absolute.lexically_normal().string();
    }
    std::stringstream ss(path_var);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        if (dir.empty()) continue;
        std::string candidate = dir + "/" + command;
        if (usable(candidate)) return candidate;
    }
    throw Error(ErrorKind::usage,
                "command '" + command + "' not found in the sandbox PATH (" + path_var +
                    "); give its full path",
                {{"command", command}});
}

namespace {

// Everything the child needs, prepared before clone so the child only makes system calls.
struct Prepared {
    std::vector<char*> argv;
    std::vector<char*> envp;
    int cap_last = 63;
};

[[noreturn]] void child_fail(int errpipe, int stage, int err) {
    int msg[2] = {stage, err};
    (void)!::write(errpipe, msg, sizeof msg);
    ::_exit(127);
}

enum Stage { kV1Join = 1, kStdio, kCaps, kGroups, kGid, kUid, kNoNewPrivs, kPdeath, kChdir,
             kRlimit, kSeccomp, kExec, kCloseFds, kMounts, kWorkspace, kLandlock, kProc,
             kKeyring, kSession, kServer, kInit,
             kFsView = 1000 };  // kFsView + the step of apply_fs_view that failed

const char* stage_name(int stage) {
    switch (stage) {
        case kV1Join: return "joining the v1 cgroups";
        case kStdio: return "setting up stdio";
        case kCaps: return "dropping capabilities";
        case kGroups: return "clearing supplementary groups";
        case kGid: return "switching group";
        case kUid: return "switching user";
        case kNoNewPrivs: return "setting no_new_privs";
        case kPdeath: return "setting the parent-death signal";
        case kChdir: return "entering the home directory";
        case kRlimit: return "setting rlimits";
        case kSeccomp: return "installing the seccomp filter";
        case kExec: return "executing the command";
        case kCloseFds: return "closing inherited file descriptors";
        case kMounts: return "hiding /run in a private mount namespace";
        case kLandlock: return "entering a Landlock domain";
        case kWorkspace: return "mounting the private home and tmp";
        case kProc: return "mounting the sandbox's own /proc";
        case kKeyring: return "joining a new session keyring";
        case kSession: return "starting a new session (setsid)";
        case kServer: return "starting the server in the PID namespace";
        case kInit: return "executing mcpwarden-init";
    }
    return "starting";
}

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define MCPWARDEN_CLONE_VM 1
// clone3 with the child starting on its own stack: long clone3_on_stack(args, size, fn, arg).
// The parent returns the pid (or -errno); the child calls fn(arg) and exits with its result.
// (A CLONE_VM child cannot return through the caller's frames, which the parent still needs:
// glibc has no public clone3 wrapper, so this does what its internal one does.)
extern "C" long mcpwarden_clone3_on_stack(struct clone_args* args, size_t size, int (*fn)(void*),
                                          void* arg);
asm(R"(
    .text
    .globl mcpwarden_clone3_on_stack
    .hidden mcpwarden_clone3_on_stack
    .type mcpwarden_clone3_on_stack,@function
mcpwarden_clone3_on_stack:
    .cfi_startproc
    mov %rdx, %r8
    mov %rcx, %r9
    mov $435, %eax
    syscall
    test %rax, %rax
    jz 1f
    ret
1:
    .cfi_undefined %rip
    xor %ebp, %ebp
    mov %r9, %rdi
    call *%r8
    mov %eax, %edi
    mov $60, %eax
    syscall
    hlt
    .cfi_endproc
    .size mcpwarden_clone3_on_stack, .-mcpwarden_clone3_on_stack
)");
#endif

// Where the descriptors the child needs were moved (a reserved block), and the first number
// it does not keep.
struct Moved {
    unsigned limit = 0;
    int errpipe = -1;
    int v1_procs[3] = {-1, -1, -1};
    int stdio[3] = {-1, -1, -1};
    int init = -1, status = -1;
};

struct ChildArgs {
    const ChildSpec* spec;
    const Prepared* prep;
    int errpipe;
    int init_fd;             // O_PATH mcpwarden-init
    int status_fd;           // write end of the status pipe, for the init
    const Moved* moved = nullptr;
    void* server_stack = nullptr;  // the server's stack (CLONE_VM), else null
    std::size_t server_stack_size = 0;
    volatile int* server_failed = nullptr;  // set by the server when it could not exec
};

// Writes v in decimal into buf (at least 12 bytes): no allocation in the child.
char* format_number(char* buf, long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v > 0 && n < 23);
    for (int i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    buf[n] = 0;
    return buf;
}

// The Landlock domain of the server. It has no filesystem rule of effect (the mount view is the
// filesystem boundary): what it brings is its scoping, no ptrace, /proc/PID/mem and the like of
// a process outside it and, at ABI >= 6, no signal to one and no abstract Unix socket of one.
// Below ABI 6 a ruleset must handle some filesystem right: it handles REFER (renames and links
// across directories, which every domain denies unless granted) and grants it beneath /.
int enter_landlock(int abi) {
    struct { std::uint64_t fs, net, scoped; } attr{0, 0, 0};
    std::size_t size = sizeof attr;
    if (abi >= 6) {
        attr.scoped = 1 /* LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET */ | 2 /* LANDLOCK_SCOPE_SIGNAL */;
    } else {
        attr.fs = 1ULL << 13;  // LANDLOCK_ACCESS_FS_REFER
        size = sizeof attr.fs;
    }
    long fd = ::syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (fd < 0) return errno;
    int err = 0;
    if (abi < 6) {
        struct [[gnu::packed]] { std::uint64_t allowed_access; std::int32_t parent_fd; } beneath{
            1ULL << 13, ::open("/", O_PATH | O_CLOEXEC)};
        if (beneath.parent_fd < 0 ||
            ::syscall(SYS_landlock_add_rule, fd, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &beneath, 0) != 0)
            err = errno;
        if (beneath.parent_fd >= 0) ::close(beneath.parent_fd);
    }
    if (err == 0 && ::syscall(SYS_landlock_restrict_self, fd, 0) != 0) err = errno;
    ::close(static_cast<int>(fd));
    return err;
}

// PID 2: the server, from the init's clone to its execve. Raw system calls only (it may share
// the memory of mcpwarden, whose threads run on).
[[noreturn]] void server_main(const ChildArgs& a, int errpipe) {
    const ChildSpec& spec = *a.spec;
    const Prepared& prep = *a.prep;
    auto fail = [&](int stage, int err) {
        *a.server_failed = 1;
        child_fail(errpipe, stage, err);
    };
    // Signal handlers are the defaults already (the init reset them); the server starts with
    // none blocked (mcpwarden blocks some for its signalfd, the init all).
    sigset_t none;
    sigemptyset(&none);
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, NSIG / 8);
    // A session of its own: the invoking terminal is never its controlling terminal, so it can
    // neither TIOCSTI into it nor signal the terminal's foreground job.
    if (::setsid() < 0) fail(kSession, errno);
    if (spec.degraded.address_space) {
        struct rlimit rl{*spec.degraded.address_space, *spec.degraded.address_space};
        if (::setrlimit(RLIMIT_AS, &rl) != 0) fail(kRlimit, errno);
    }
    if (spec.degraded.nproc) {
        struct rlimit rl{*spec.degraded.nproc, *spec.degraded.nproc};
        if (::setrlimit(RLIMIT_NPROC, &rl) != 0) fail(kRlimit, errno);
    }
    if (spec.open_files) {
        struct rlimit rl{spec.open_files, spec.open_files};
        if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) fail(kRlimit, errno);
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        fail(kCaps, errno);
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) fail(kGroups, errno);
    if (::syscall(SYS_setresgid, spec.user.gid, spec.user.gid, spec.user.gid) != 0) fail(kGid, errno);
    // setresuid from root to a non-root uid clears permitted, effective and ambient capabilities.
    if (::syscall(SYS_setresuid, spec.user.uid, spec.user.uid, spec.user.uid) != 0) fail(kUid, errno);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(kNoNewPrivs, errno);
    if (!spec.workdir.empty() && ::chdir(spec.workdir.c_str()) != 0) fail(kChdir, errno);
    // Every fd above 2 is closed at exec (the status pipe among them); the error pipe is
    // close-on-exec already.
    if (::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) fail(kCloseFds, errno);
    if (spec.landlock_abi >= 2) {
        if (int err = enter_landlock(spec.landlock_abi)) fail(kLandlock, err);
    }
    if (spec.seccomp_program) {
        if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, spec.seccomp_program) != 0)
            fail(kSeccomp, errno);
    }
    ::execve(spec.executable.c_str(), prep.argv.data(), prep.envp.data());
    fail(kExec, errno);
    ::_exit(127);
}

[[maybe_unused]] int server_entry(void* p) {
    const auto* a = static_cast<const ChildArgs*>(p);
    server_main(*a, a->moved ? a->moved->errpipe : a->errpipe);
}

// Starts the server as PID 2: like clone_child, sharing the memory (the init waits in vfork
// until the server has executed) where it can.
long clone_server(const ChildArgs& a, int errpipe) {
    struct clone_args args {};
    args.flags = CLONE_VFORK;
    args.exit_signal = SIGCHLD;
#ifdef MCPWARDEN_CLONE_VM
    args.flags |= CLONE_VM;
    args.stack = reinterpret_cast<std::uint64_t>(a.server_stack);
    args.stack_size = a.server_stack_size;
    (void)errpipe;
    return mcpwarden_clone3_on_stack(&args, sizeof args, server_entry, const_cast<ChildArgs*>(&a));
#else
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) return -errno;
    if (pid == 0) server_main(a, errpipe);
    return pid;
#endif
}

// PID 1 of the sandbox's namespaces, between clone3 and the execve of mcpwarden-init: raw
// system calls only. The child may share the parent's memory (CLONE_VM) and the parent may
// have threads: no allocation, no locks, nothing written outside its stacks, and glibc's
// set*id (which signals the parent's threads) is avoided.
[[noreturn]] void child_main(const ChildArgs& a) {
    const ChildSpec& spec = *a.spec;
    const Prepared& prep = *a.prep;
    const Moved* moved = a.moved;
    int errpipe = a.errpipe, init_fd = a.init_fd, status_fd = a.status_fd;
    int v1_procs[3] = {-1, -1, -1};
    int wanted[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
    for (std::size_t i = 0; i < spec.v1_procs_fds.size(); ++i) v1_procs[i] = spec.v1_procs_fds[i];
    // Until the init runs, mcpwarden's death kills us (and, PID 1 gone, the namespace).
    if (spec.parent_death_kill && ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        child_fail(errpipe, kPdeath, errno);
    // The filesystem view comes first, while the descriptor table may still be the parent's
    // (the detached mounts the view attaches, prepared there, are in it). The mount and IPC
    // namespaces are new (CLONE_NEWNS | CLONE_NEWIPC); apply_fs_view makes propagation slave
    // (our mounts never reach the host, the sandbox cannot unmount them) and, PID 1 of a new
    // PID namespace, mounts the sandbox's own /proc last.
    if (spec.fs_view) {
        int step = 0;
        if (int err = apply_fs_view(*spec.fs_view, &step)) child_fail(errpipe, kFsView + step, err);
    } else {
        // /proc of the new PID namespace: the sandbox's processes only.
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) child_fail(errpipe, kMounts, errno);
        if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
            child_fail(errpipe, kProc, errno);
    }
    if (moved) {
        // The descriptor table is the parent's until this call; from here on the child has a copy
        // of its low part only, where the descriptors it needs were moved.
        if (::syscall(SYS_close_range, moved->limit, ~0U, CLOSE_RANGE_UNSHARE) != 0)
            child_fail(moved->errpipe, kCloseFds, errno);
        errpipe = moved->errpipe;
        init_fd = moved->init;
        status_fd = moved->status;
        for (int i = 0; i < 3; ++i) {
            v1_procs[i] = moved->v1_procs[i];
            wanted[i] = moved->stdio[i];
        }
    }
    for (int fd : v1_procs) {
        if (fd >= 0 && ::write(fd, "0", 1) != 1) child_fail(errpipe, kV1Join, errno);
    }
    // Signals arrive blocked (spawn_child blocks them all around clone, so no handler of the
    // parent runs here): handlers go back to the defaults. They stay blocked through the exec
    // of the init, which takes the ones it forwards through a signalfd: one sent meanwhile
    // waits for it.
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);

    // The init's stdio: /dev/null (it holds none of the server's).
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0 && devnull < 3) {
        int high = ::fcntl(devnull, F_DUPFD_CLOEXEC, 3);
        ::close(devnull);
        devnull = high;
    }
    if (devnull < 0) child_fail(errpipe, kStdio, errno);
    for (int i = 0; i < 3; ++i) {
        if (wanted[i] >= 0 && wanted[i] != i && ::dup2(wanted[i], i) < 0)
            child_fail(errpipe, kStdio, errno);
    }
    // A new, anonymous session keyring (made as root: no key quota of the sandbox user is
    // spent, 1,000 sandboxes of one uid would exceed it): the caller's keys are out of reach.
    if (::syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, nullptr, 0, 0, 0) < 0)
        child_fail(errpipe, kKeyring, errno);
    // The bounding set goes first, while we still hold CAP_SETPCAP; the server inherits it.
    for (int cap = 0; cap <= prep.cap_last; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            child_fail(errpipe, kCaps, errno);
    }
    long server = clone_server(a, errpipe);
    if (server < 0) child_fail(errpipe, kServer, static_cast<int>(-server));
    if (*a.server_failed) ::_exit(127);  // it said why through the error pipe

    // The init: real uid the server's, effective and saved uid 0, no capability. The server may
    // then be signalled by it but not ptrace it (that needs all three uids equal); the exec
    // with real != effective uid makes it non-dumpable from its first instruction (and clears
    // the parent-death signal: the init watches the status pipe instead).
    if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                    SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
                0, 0, 0) != 0 ||
        ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        child_fail(errpipe, kCaps, errno);
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(errpipe, kGroups, errno);
    if (::syscall(SYS_setresgid, spec.user.gid, spec.user.gid, spec.user.gid) != 0)
        child_fail(errpipe, kGid, errno);
    if (::syscall(SYS_setresuid, spec.user.uid, 0, 0) != 0) child_fail(errpipe, kUid, errno);
    struct { std::uint32_t version; int pid; } cap_header{0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct { std::uint32_t effective, permitted, inheritable; } no_caps[2] = {};
    if (::syscall(SYS_capset, &cap_header, no_caps) != 0) child_fail(errpipe, kCaps, errno);
    // no_new_privs is the init's first call, not ours: with it the exec would set the effective
    // uid to the real one, and the server could then ptrace the init. The exec gains nothing
    // without it: mcpwarden-init is no set-uid file, and the bounding set is empty.
    for (int i = 0; i < 3; ++i) {
        if (::dup2(devnull, i) < 0) child_fail(errpipe, kStdio, errno);
    }
    if (::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0 ||
        ::fcntl(status_fd, F_SETFD, 0) != 0)
        child_fail(errpipe, kCloseFds, errno);
    char pid_arg[24], fd_arg[24];
    char watch_arg[2] = {spec.parent_death_kill ? '1' : '0', 0};
    char name[] = "mcpwarden-init";
    char* argv[] = {name, format_number(pid_arg, server), format_number(fd_arg, status_fd), watch_arg, nullptr};
    char* envp[] = {nullptr};
    ::syscall(SYS_execveat, init_fd, "", argv, envp, AT_EMPTY_PATH);
    // The server runs already: PID 1 exiting takes it (and the namespace) down.
    child_fail(errpipe, kInit, errno);
}

[[maybe_unused]] int child_entry(void* p) {
    child_main(*static_cast<const ChildArgs*>(p));
}

// The reserved descriptor blocks (reserve_spawn_descriptors). A free slot holds a duplicate of
// /dev/null; a block in use holds the child's descriptors until the clone returns.
class DescriptorBlocks {
public:
    static constexpr int kPerBlock = 9;  // error pipe, three v1 cgroup.procs, stdio, init, status pipe
    using Block = std::array<int, kPerBlock>;

    static DescriptorBlocks& instance() {
        static DescriptorBlocks blocks;
        return blocks;
    }

    int reserve(int count) {
        std::lock_guard lock(mu_);
        if (!free_.empty() || !filler_) return static_cast<int>(free_.size());
        for (int b = 0; b < count; ++b) {
            Block block;
            for (int& fd : block) {
                fd = ::fcntl(filler_.get(), F_DUPFD_CLOEXEC, 3);
                if (fd < 0) return static_cast<int>(free_.size());  // what was made stays usable
                limit_ = std::max<unsigned>(limit_, static_cast<unsigned>(fd) + 1);
            }
            free_.push_back(block);
        }
        return static_cast<int>(free_.size());
    }

    std::optional<Block> take() {
        std::lock_guard lock(mu_);
        if (free_.empty()) return std::nullopt;
        Block b = free_.back();
        free_.pop_back();
        return b;
    }

    // Points the block's slots at /dev/null again (dropping the child's descriptors) and frees it.
    void give_back(const Block& b) {
        for (int fd : b) ::dup3(filler_.get(), fd, O_CLOEXEC);
        std::lock_guard lock(mu_);
        free_.push_back(b);
    }

    unsigned limit() const { return limit_; }

private:
    DescriptorBlocks() {
        // Without CLOSE_RANGE_UNSHARE (Linux 5.9) nothing is reserved. It is not probed by
        // calling it: here, with threads sharing the table, it would give the calling thread a
        // table of its own.
        struct utsname u {};
        int major = 0, minor = 0;
        if (::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
            (major > 5 || (major == 5 && minor >= 9)))
            filler_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }

    std::mutex mu_;
    UniqueFd filler_;
    std::vector<Block> free_;
    std::atomic<unsigned> limit_{0};
};

// Holds a block for one spawn and moves the child's descriptors into it.
class BlockLease {
public:
    BlockLease(const ChildSpec& spec, int errpipe, int init_fd, int status_fd) {
        auto b = DescriptorBlocks::instance().take();
        if (!b) return;
        block_ = *b;
        moved_.limit = DescriptorBlocks::instance().limit();
        std::size_t next = 0;
        auto move = [&](int fd) {
            if (fd < 0) return -1;
            int slot = block_->at(next++);
            return ::dup3(fd, slot, O_CLOEXEC) == slot ? slot : -2;
        };
        bool ok = (moved_.errpipe = move(errpipe)) >= 0;
        for (std::size_t i = 0; i < spec.v1_procs_fds.size(); ++i) ok = (moved_.v1_procs[i] = move(spec.v1_procs_fds[i])) >= 0 && ok;
        int stdio[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
        for (int i = 0; i < 3; ++i) ok = (moved_.stdio[i] = move(stdio[i])) != -2 && ok;
        ok = (moved_.init = move(init_fd)) >= 0 && ok;
        ok = (moved_.status = move(status_fd)) >= 0 && ok;
        if (!ok) release();  // the child copies the whole table, as without a block
    }
    ~BlockLease() { release(); }
    BlockLease(const BlockLease&) = delete;
    BlockLease& operator=(const BlockLease&) = delete;

    const Moved* moved() const { return block_ ? &moved_ : nullptr; }

private:
    void release() {
        if (block_) DescriptorBlocks::instance().give_back(*block_);
        block_.reset();
    }
    std::optional<DescriptorBlocks::Block> block_;
    Moved moved_;
};

// Every signal blocked on the calling thread while it clones (glibc's internal ones too:
// sigprocmask would leave those), so none is handled in the child before its handlers are reset.
class AllSignalsBlocked {
public:
    AllSignalsBlocked() {
        sigset_t all;
        sigfillset(&all);
        ::syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old_, NSIG / 8);
    }
    ~AllSignalsBlocked() { ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old_, nullptr, NSIG / 8); }
    AllSignalsBlocked(const AllSignalsBlocked&) = delete;
    AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

private:
    sigset_t old_{};
};

// Clones the child into its cgroup and namespaces. Where it can (x86-64), the child shares the
// parent's memory until its execve, as posix_spawn's does (CLONE_VM | CLONE_VFORK, on a stack
// of its own), and so does the server it starts (on a second stack): no copy of the parent's
// mappings and page tables, which in the agent grow with every sandbox. Otherwise (and under
// the sanitizers, whose bookkeeping does not expect a second stack in the same memory) both
// are fork-like copies. Returns the pid or -errno in the parent; never returns in the child.
long clone_child(struct clone_args& args, ChildArgs& child_args, UniqueFd& err_read) {
#ifdef MCPWARDEN_CLONE_VM
    (void)err_read;  // shared with the parent: left alone, it is close-on-exec
    constexpr size_t kStack = 64 * 1024, kGuard = 4096;
    // [guard][init's stack][guard][server's stack]: an overflow faults instead of writing elsewhere.
    void* mem = ::mmap(nullptr, 2 * (kStack + kGuard), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    auto* base = static_cast<char*>(mem);
    ::mprotect(base, kGuard, PROT_NONE);
    ::mprotect(base + kGuard + kStack, kGuard, PROT_NONE);
    volatile int server_failed = 0;
    child_args.server_failed = &server_failed;
    child_args.server_stack = base + kGuard + kStack + kGuard;  // clone3 takes the lowest address
    child_args.server_stack_size = kStack;
    BlockLease lease(*child_args.spec, child_args.errpipe, child_args.init_fd, child_args.status_fd);
    child_args.moved = lease.moved();
    args.flags |= CLONE_VM | CLONE_VFORK;
    // With its descriptors in a block, the child shares the table until it copies the low part.
    if (child_args.moved) args.flags |= CLONE_FILES;
    args.stack = reinterpret_cast<std::uint64_t>(base + kGuard);
    args.stack_size = kStack;
    long pid;
    {
        AllSignalsBlocked blocked;
        pid = mcpwarden_clone3_on_stack(&args, sizeof args, child_entry, &child_args);
    }
    ::munmap(mem, 2 * (kStack + kGuard));  // both have executed or exited (CLONE_VFORK)
    return pid;
#else
    // The server tells the init it could not exec through memory both see.
    void* shared = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return -errno;
    child_args.server_failed = static_cast<volatile int*>(shared);
    long pid;
    {
        AllSignalsBlocked blocked;
        pid = ::syscall(SYS_clone3, &args, sizeof args);
        if (pid < 0) pid = -errno;
        // The child starts here with every signal blocked and must stay so (the init takes
        // SIGCHLD through a signalfd): it never leaves this scope, whose end unblocks them.
        if (pid == 0) {
            err_read.release();
            child_main(child_args);
        }
    }
    ::munmap(shared, 4096);
    return pid;
#endif
}

}  // namespace

int reserve_spawn_descriptors(int blocks) {
#ifdef MCPWARDEN_CLONE_VM
    return DescriptorBlocks::instance().reserve(blocks);
#else
    (void)blocks;
    return 0;
#endif
}

int init_program_fd() {
    static std::mutex mu;
    static UniqueFd fd;
    std::lock_guard lock(mu);
    if (fd) return fd.get();
    std::vector<std::string> places;
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        std::string exe(self, static_cast<std::size_t>(n));
        places.push_back(exe.substr(0, exe.rfind('/') + 1) + "mcpwarden-init");
    }
    places.push_back(std::string(MCPWARDEN_LIBEXEC_DIR) + "/mcpwarden-init");
    for (const auto& path : places) {
        struct stat st {};
        UniqueFd f(::open(path.c_str(), O_PATH | O_CLOEXEC));
        if (f && ::fstat(f.get(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
            fd = std::move(f);
            return fd.get();
        }
    }
    std::string where;
    for (const auto& p : places) where += (where.empty() ? "" : " and ") + p;
    throw Error(ErrorKind::sandbox_unavailable,
                "mcpwarden-init (PID 1 of every sandbox) not found: looked for " + where +
                    "; reinstall mcpwarden (it is installed next to it, in libexec)",
                {{"looked_in", places}});
}

siginfo_t child_exit_status(const Child& child, const siginfo_t& init_exit) {
    int msg[2];
    if (child.status && ::read(child.status.get(), msg, sizeof msg) == static_cast<ssize_t>(sizeof msg)) {
        siginfo_t out = init_exit;
        out.si_code = msg[0];
        out.si_status = msg[1];
        return out;
    }
    return init_exit;
}

Child spawn_child(const ChildSpec& spec) {
    if (spec.v1_procs_fds.size() > 3)
        throw Error(ErrorKind::internal, "more v1 cgroups to join than memory, pids and cpu");
    Prepared prep;
    for (const auto& a : spec.argv) prep.argv.push_back(const_cast<char*>(a.c_str()));
    prep.argv.push_back(nullptr);
    for (const auto& e : spec.env) prep.envp.push_back(const_cast<char*>(e.c_str()));
    prep.envp.push_back(nullptr);
    std::string last;
    if (read_file("/proc/sys/kernel/cap_last_cap", last)) prep.cap_last = std::atoi(last.c_str());

    int init_fd = init_program_fd();
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0)
        throw Error(ErrorKind::sandbox_unavailable, errno_text("pipe2", errno));
    UniqueFd err_read(pipefd[0]), err_write(pipefd[1]);
    if (::pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
        throw Error(ErrorKind::sandbox_unavailable, errno_text("pipe2", errno));
    UniqueFd status_read(pipefd[0]), status_write(pipefd[1]);

    int pidfd = -1;
    struct clone_args args {};
    args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC;
    args.pidfd = reinterpret_cast<std::uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<std::uint64_t>(spec.cgroup_fd);
    ChildArgs child_args{&spec, &prep, err_write.get(), init_fd, status_write.get()};
    long pid = clone_child(args, child_args, err_read);
    if (pid < 0) {
        int err = static_cast<int>(-pid);
        std::string msg = errno_text("clone3(CLONE_INTO_CGROUP) failed", err);
        if (err == ENOSYS || err == E2BIG || err == EINVAL)
            msg += "; mcpwarden needs Linux 5.7 or later to start the server inside its cgroup";
        throw Error(ErrorKind::sandbox_unavailable, msg);
    }
    Child child;
    child.pid = static_cast<pid_t>(pid);
    child.pidfd.reset(pidfd);
    child.status = std::move(status_read);
    err_write.reset();
    status_write.reset();
    int msg[2] = {0, 0};
    ssize_t n;
    do {
        n = ::read(err_read.get(), msg, sizeof msg);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof msg)) {
        siginfo_t info{};
        ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
        std::string stage = msg[0] >= kFsView && spec.fs_view
                                ? describe_fs_view_step(*spec.fs_view, msg[0] - kFsView)
                                : stage_name(msg[0]);
        std::string text = "the sandboxed command could not start (" + stage + "): " + std::strerror(msg[1]);
        ErrorKind kind = msg[0] == kExec ? ErrorKind::usage : ErrorKind::sandbox_unavailable;
        throw Error(kind, text, {{"stage", stage}, {"errno", msg[1]}});
    }
    return child;
}

}  // namespace mcpwarden
