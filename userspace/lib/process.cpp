#include "process.h"

#include <fcntl.h>
#include <linux/sched.h>
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
#include <sstream>

#include "error.h"
#include "fs_view.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace mcpwarden {

UserIdentity resolve_user(const std::string& name) {
    struct passwd pw {};
    struct passwd* result = nullptr;
    std::vector<char> buf(16384);
    bool numeric = !name.empty() && name.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) {
        ::getpwuid_r(static_cast<uid_t>(std::stoul(name)), &pw, buf.data(), buf.size(), &result);
    } else {
        ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &result);
    }
    UserIdentity u;
    if (result) {
        u = {pw.pw_name, pw.pw_uid, pw.pw_gid};
    } else if (numeric) {
        uid_t id = static_cast<uid_t>(std::stoul(name));
        u = {name, id, id};
    } else {
        throw Error(ErrorKind::usage, "unknown user '" + name + "' (give a user name from "
                                      "/etc/passwd or a numeric uid)");
    }
    if (u.uid == 0 || u.gid == 0) {
        throw Error(ErrorKind::usage,
                    "refusing to run the server as root (user '" + name +
                        "'): it could leave its cgroup and remove its own egress policy; "
                        "use an unprivileged user (default: nobody)");
    }
    return u;
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
        return command;
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
             kRlimit, kSeccomp, kExec, kCloseFds, kMounts, kLandlock,
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
        case kMounts: return "entering mount and IPC namespaces of its own";
        case kLandlock: return "scoping abstract Unix sockets (Landlock)";
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
};

// Runs in the child between clone3 and execve: raw system calls only. The child may share the
// parent's memory (CLONE_VM) and the parent may have threads: no allocation, no locks, nothing
// written outside this stack, and glibc's set*id (which signals the parent's threads) is
// avoided.
[[noreturn]] void child_main(const ChildSpec& spec, const Prepared& prep, int errpipe,
                             pid_t parent, const Moved* moved) {
    int v1_procs[3] = {-1, -1, -1};
    int wanted[3] = {spec.stdin_fd, spec.stdout_fd, spec.stderr_fd};
    for (std::size_t i = 0; i < spec.v1_procs_fds.size(); ++i) v1_procs[i] = spec.v1_procs_fds[i];
    // The filesystem view, while the descriptor table still holds its detached mounts (with a
    // block, the table is the parent's until the close_range below). Our mounts never reach the
    // host (slave propagation) and the server cannot unmount them. The IPC namespace keeps SysV
    // IPC (shared memory, queues, semaphores) of the sandbox its own, gone with it.
    if (spec.fs_view) {
        if (::unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0) child_fail(errpipe, kMounts, errno);
        int step = 0;
        if (int err = apply_fs_view(*spec.fs_view, &step)) child_fail(errpipe, kFsView + step, err);
    }
    if (moved) {
        // The descriptor table is the parent's until this call; from here on the child has a copy
        // of its low part only, where the descriptors it needs were moved.
        if (::syscall(SYS_close_range, moved->limit, ~0U, CLOSE_RANGE_UNSHARE) != 0)
            child_fail(moved->errpipe, kCloseFds, errno);
        errpipe = moved->errpipe;
        for (int i = 0; i < 3; ++i) {
            v1_procs[i] = moved->v1_procs[i];
            wanted[i] = moved->stdio[i];
        }
    }
    for (int fd : v1_procs) {
        if (fd >= 0 && ::write(fd, "0", 1) != 1) child_fail(errpipe, kV1Join, errno);
    }
    // Signals arrive blocked (spawn_child blocks them all around clone, so no handler of the
    // parent runs here): handlers go back to the defaults, then the server starts with none
    // blocked (mcpwarden blocks some for its signalfd).
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, NSIG / 8);

    for (int i = 0; i < 3; ++i) {
        if (wanted[i] >= 0 && wanted[i] != i && ::dup2(wanted[i], i) < 0)
            child_fail(errpipe, kStdio, errno);
    }
    if (spec.degraded.address_space) {
        struct rlimit rl{*spec.degraded.address_space, *spec.degraded.address_space};
        if (::setrlimit(RLIMIT_AS, &rl) != 0) child_fail(errpipe, kRlimit, errno);
    }
    if (spec.degraded.nproc) {
        struct rlimit rl{*spec.degraded.nproc, *spec.degraded.nproc};
        if (::setrlimit(RLIMIT_NPROC, &rl) != 0) child_fail(errpipe, kRlimit, errno);
    }
    // The bounding set goes first, while we still hold CAP_SETPCAP.
    for (int cap = 0; cap <= prep.cap_last; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            child_fail(errpipe, kCaps, errno);
    }
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        child_fail(errpipe, kCaps, errno);
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(errpipe, kGroups, errno);
    if (::syscall(SYS_setresgid, spec.user.gid, spec.user.gid, spec.user.gid) != 0)
        child_fail(errpipe, kGid, errno);
    // setresuid from root to a non-root uid clears permitted, effective and ambient capabilities.
    if (::syscall(SYS_setresuid, spec.user.uid, spec.user.uid, spec.user.uid) != 0)
        child_fail(errpipe, kUid, errno);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(errpipe, kNoNewPrivs, errno);
    // A credential change clears the parent-death signal, so it is set after setresuid.
    if (spec.parent_death_kill) {
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(errpipe, kPdeath, errno);
        if (::getppid() != parent) ::_exit(127);  // mcpwarden died before PDEATHSIG was armed
    }
    if (!spec.workdir.empty() && ::chdir(spec.workdir.c_str()) != 0)
        child_fail(errpipe, kChdir, errno);
    // Every fd above 2 is closed at exec; the error pipe is close-on-exec already.
    if (::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        child_fail(errpipe, kCloseFds, errno);
    if (spec.landlock_abstract_unix) {
        // struct landlock_ruleset_attr of Linux 6.12 (scoped); LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET.
        struct { std::uint64_t fs, net, scoped; } attr{0, 0, 1};
        long fd = ::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
        if (fd < 0) child_fail(errpipe, kLandlock, errno);
        if (::syscall(SYS_landlock_restrict_self, fd, 0) != 0) child_fail(errpipe, kLandlock, errno);
        ::close(static_cast<int>(fd));
    }
    if (spec.seccomp_program) {
        if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, spec.seccomp_program) != 0)
            child_fail(errpipe, kSeccomp, errno);
    }
    ::execve(spec.executable.c_str(), prep.argv.data(), prep.envp.data());
    child_fail(errpipe, kExec, errno);
}

struct ChildArgs {
    const ChildSpec* spec;
    const Prepared* prep;
    int errpipe;
    pid_t parent;
    const Moved* moved = nullptr;
};

[[maybe_unused]] int child_entry(void* p) {
    const auto* a = static_cast<const ChildArgs*>(p);
    child_main(*a->spec, *a->prep, a->errpipe, a->parent, a->moved);
}

// The reserved descriptor blocks (reserve_spawn_descriptors). A free slot holds a duplicate of
// /dev/null; a block in use holds the child's descriptors until the clone returns.
class DescriptorBlocks {
public:
    static constexpr int kPerBlock = 7;  // error pipe, three v1 cgroup.procs, stdio
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
    explicit BlockLease(const ChildSpec& spec, int errpipe) {
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

// Clones the child into its cgroup. Where it can (x86-64), the child shares the parent's memory
// until its execve, as posix_spawn's does (CLONE_VM | CLONE_VFORK, on a stack of its own): no
// copy of the parent's mappings and page tables, which in the agent grow with every sandbox. Otherwise (and under the sanitizers, whose bookkeeping
// does not expect a second stack in the same memory) it is a fork-like copy. Returns the pid or
// -errno in the parent; never returns in the child.
long clone_child(struct clone_args& args, ChildArgs& child_args, UniqueFd& err_read) {
#ifdef MCPWARDEN_CLONE_VM
    (void)err_read;  // shared with the parent: left alone, it is close-on-exec
    constexpr size_t kStack = 64 * 1024, kGuard = 4096;
    void* mem = ::mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    ::mprotect(mem, kGuard, PROT_NONE);  // an overflow faults instead of writing elsewhere
    BlockLease lease(*child_args.spec, child_args.errpipe);
    child_args.moved = lease.moved();
    args.flags |= CLONE_VM | CLONE_VFORK;
    // With its descriptors in a block, the child shares the table until it copies the low part.
    if (child_args.moved) args.flags |= CLONE_FILES;
    args.stack = reinterpret_cast<std::uint64_t>(mem) + kGuard;
    args.stack_size = kStack;
    long pid;
    {
        AllSignalsBlocked blocked;
        pid = mcpwarden_clone3_on_stack(&args, sizeof args, child_entry, &child_args);
    }
    ::munmap(mem, kStack + kGuard);  // the child has executed or exited (CLONE_VFORK)
    return pid;
#else
    long pid;
    {
        AllSignalsBlocked blocked;
        pid = ::syscall(SYS_clone3, &args, sizeof args);
        if (pid < 0) pid = -errno;
    }
    if (pid == 0) {
        err_read.release();
        child_main(*child_args.spec, *child_args.prep, child_args.errpipe, child_args.parent, nullptr);
    }
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

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0)
        throw Error(ErrorKind::sandbox_unavailable, errno_text("pipe2", errno));
    UniqueFd err_read(pipefd[0]), err_write(pipefd[1]);

    int pidfd = -1;
    struct clone_args args {};
    args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<std::uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<std::uint64_t>(spec.cgroup_fd);
    ChildArgs child_args{&spec, &prep, err_write.get(), ::getpid()};
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
    err_write.reset();
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
