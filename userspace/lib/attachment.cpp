// SPDX-License-Identifier: Apache-2.0
#include "attachment.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "cgroup.h"
#include "enforcer.h"
#include "error.h"

namespace mcpwarden {
namespace {

std::string strip_slashes(std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p;
}

// "holder-<pid>-<start time>" entries of a pin directory, as sandbox_owner_alive names them.
std::vector<std::string> holders(const std::string& pin_dir) {
    std::vector<std::string> out;
    DIR* d = ::opendir(pin_dir.c_str());
    if (!d) return out;
    while (auto* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.rfind("holder-", 0) == 0) out.push_back(n);
    }
    ::closedir(d);
    return out;
}

// The holder's pid if it still runs (its start time matches), else 0.
pid_t live_holder(const std::string& holder) {
    std::string rest = holder.substr(7);  // "<pid>-<start>"
    if (!sandbox_owner_alive("s-" + rest + "-0")) return 0;
    return static_cast<pid_t>(std::atol(rest.c_str()));
}

std::string own_start_token() {
    // make_sandbox_name() is "s-<pid>-<start>-<seq>": its middle is exactly the holder token.
    std::string n = make_sandbox_name();
    return n.substr(2, n.rfind('-') - 2);
}

// The processes of a cgroup and of its descendants (at most `max`).
void cgroup_pids(const std::string& dir, std::vector<pid_t>& out, std::size_t max, int depth = 0) {
    {
        std::ifstream procs(dir + "/cgroup.procs");
        for (long pid; out.size() < max && procs >> pid;) out.push_back(static_cast<pid_t>(pid));
    }
    if (depth > 16 || out.size() >= max) return;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    std::vector<std::string> children;
    while (auto* e = ::readdir(d))
        if (e->d_type == DT_DIR && e->d_name[0] != '.') children.push_back(dir + "/" + e->d_name);
    ::closedir(d);
    for (const auto& c : children) cgroup_pids(c, out, max, depth + 1);
}

// Finds the network namespace of the target's processes (see AttachTarget).
void find_netns(AttachTarget& t, pid_t given) {
    constexpr std::size_t kMaxPids = 4096;
    std::vector<pid_t> pids;
    cgroup_pids(t.path, pids, kMaxPids);
    if (given > 0 && pids.size() < kMaxPids && std::find(pids.begin(), pids.end(), given) == pids.end())
        throw Error(ErrorKind::usage, "process " + std::to_string(given) + " is not in cgroup " + t.path,
                    {{"path", t.path}, {"pid", given}});
    if (given > 0) pids.insert(pids.begin(), given);  // its namespace first: the one opened
    struct stat own {};
    if (::stat("/proc/self/ns/net", &own) != 0)
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot read mcpwarden's network namespace", errno));
    struct stat first {};
    pid_t first_pid = 0;
    for (pid_t pid : pids) {
        // Through the process's /proc directory: its namespace and nobody else's, even if it
        // ends and its pid is reused meanwhile (the openat then fails).
        UniqueFd proc(::open(("/proc/" + std::to_string(pid)).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!proc) continue;  // ended since cgroup.procs was read
        struct stat st {};
        if (::fstatat(proc.get(), "ns/net", &st, 0) != 0) {
            if (errno == ENOENT || errno == ESRCH) continue;
            throw Error(ErrorKind::sandbox_unavailable,
                        errno_text("cannot look at the network namespace of process " + std::to_string(pid) +
                                       " in cgroup " + t.path,
                                   errno),
                        {{"path", t.path}, {"pid", pid}});
        }
        if (!first_pid) {
            first = st;
            first_pid = pid;
            if (st.st_dev == own.st_dev && st.st_ino == own.st_ino) continue;
            t.netns.reset(::openat(proc.get(), "ns/net", O_RDONLY | O_CLOEXEC));
            if (!t.netns) {
                if (errno == ENOENT || errno == ESRCH) {
                    first_pid = 0;  // it ended between the two looks: the next one decides
                    continue;
                }
                throw Error(ErrorKind::sandbox_unavailable,
                            errno_text("cannot open the network namespace of process " + std::to_string(pid) +
                                           " in cgroup " + t.path + " (its resolver would be unreachable there)",
                                       errno),
                            {{"path", t.path}, {"pid", pid}});
            }
            t.netns_id = st.st_ino;
        } else if (st.st_ino != first.st_ino || st.st_dev != first.st_dev) {
            throw Error(ErrorKind::usage,
                        "the processes of cgroup " + t.path + " are in more than one network namespace (process " +
                            std::to_string(first_pid) + " in net:[" + std::to_string(first.st_ino) + "], " +
                            std::to_string(pid) + " in net:[" + std::to_string(st.st_ino) +
                            "]); one resolver serves one namespace: attach the cgroup of each instead",
                        {{"path", t.path}});
        }
    }
}

}  // namespace

bool valid_attachment_name(const std::string& name) {
    if (name.empty() || name.size() > 64 || name.rfind("s-", 0) == 0 || name.rfind("cg-", 0) == 0) return false;
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
    return true;
}

std::string attachment_pin_name(std::uint64_t cgroup_id) { return "cg-" + std::to_string(cgroup_id); }

AttachTarget open_attach_target(const std::string& given, pid_t pid) {
    std::string path = strip_slashes(given);
    if (path.empty()) throw Error(ErrorKind::usage, "--cgroup needs the path of a cgroup directory");
    AttachTarget t;
    t.fd.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!t.fd) throw Error(ErrorKind::usage, errno_text("cannot open cgroup " + path, errno), {{"path", path}});
    struct statfs sfs {};
    if (::fstatfs(t.fd.get(), &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
        throw Error(ErrorKind::usage,
                    path + " is not a cgroup v2 directory; egress programs attach on the unified hierarchy "
                           "(on a hybrid host: the same cgroup under /sys/fs/cgroup/unified)",
                    {{"path", path}});
    }
    struct stat st {};
    ::fstat(t.fd.get(), &st);
    t.id = st.st_ino;
    CgroupLayout layout = CgroupLayout::detect();
    std::string mount = strip_slashes(layout.unified_mount);
    char real[PATH_MAX];
    std::string resolved = ::realpath(path.c_str(), real) ? std::string(real) : path;
    if (resolved == mount || st.st_ino == 1)
        throw Error(ErrorKind::usage, "refusing to attach a policy to the root cgroup (every process on the host)",
                    {{"path", path}});
    if (resolved.find("/mcpwarden/s-") != std::string::npos)
        throw Error(ErrorKind::usage, path + " is a sandbox of mcpwarden's own; it already has its policy",
                    {{"path", path}});
    // mcpwarden's own cgroup must not lie inside the target.
    if (!mount.empty() && resolved.rfind(mount, 0) == 0) {
        std::string rel = resolved.substr(mount.size());
        std::string own = layout.own_unified;
        if (layout.unified_root != "/" && own.rfind(layout.unified_root, 0) == 0) own = own.substr(layout.unified_root.size());
        if (own == rel || own.rfind(rel + "/", 0) == 0) {
            throw Error(ErrorKind::usage,
                        path + " contains mcpwarden itself (" + layout.own_unified +
                            "); its resolver would be confined by the policy it serves. Run mcpwarden "
                            "(or the agent) outside the cgroup",
                        {{"path", path}});
        }
    }
    t.path = resolved;
    find_netns(t, pid);
    return t;
}

AttachState attach_state(const std::string& cgroup_path) {
    AttachState s;
    struct stat st {};
    if (::stat(cgroup_path.c_str(), &st) != 0) return s;
    s.cgroup_id = st.st_ino;
    std::string pin = attachment_pin_name(s.cgroup_id);
    s.attached = pinned_policy_id(pin) == s.cgroup_id;
    for (const auto& h : holders(sandbox_pin_root() + "/" + pin)) {
        if (pid_t p = live_holder(h)) s.holder = p;
    }
    return s;
}

Attachment::Attachment(const Policy& policy, AttachTarget target, bool audit_only,
                       std::shared_ptr<spdlog::logger> audit, EventLoop& loop, bool holder)
    : target_(std::move(target)), policy_name_(policy.name) {
    std::string pin = attachment_pin_name(target_.id);
    if (pinned_policy_id(pin) != 0) {
        throw Error(ErrorKind::usage,
                    "cgroup " + target_.path + " already has a policy attached; detach it first "
                    "(mcpwarden detach --cgroup " + target_.path + ")",
                    {{"path", target_.path}});
    }
    egress_ = std::make_shared<EgressExtension>(policy, audit_only, std::move(audit));
    prepare(pin);
    egress_->bind(target_.fd.get(), target_.id, pin, loop);
    target_.netns.reset();  // its resolver's sockets keep the namespace, as long as they live
    if (holder) record_holder();
    spdlog::info("attached policy {} to cgroup {} (id {}{}{})", policy.name, target_.path, target_.id,
                 name_ == pin ? "" : ", as " + name_,
                 target_.netns_id ? ", resolver in net:[" + std::to_string(target_.netns_id) + "]" : "");
}

Attachment::Attachment(Adopt, const Policy& policy, AttachTarget target, bool audit_only,
                       std::shared_ptr<spdlog::logger> audit, EventLoop& loop, bool holder)
    : target_(std::move(target)), policy_name_(policy.name) {
    std::string pin = attachment_pin_name(target_.id);
    for (const auto& h : holders(sandbox_pin_root() + "/" + pin)) {
        if (live_holder(h))
            throw Error(ErrorKind::usage, "the attachment on " + target_.path + " is held by a running process",
                        {{"path", target_.path}});
        ::rmdir((sandbox_pin_root() + "/" + pin + "/" + h).c_str());
    }
    egress_ = std::make_shared<EgressExtension>(policy, audit_only, std::move(audit));
    prepare(pin);
    egress_->adopt(target_.id, pin, loop);
    target_.netns.reset();
    if (holder) record_holder();
}

Attachment::~Attachment() {
    try {
        detach();
    } catch (const std::exception& e) {
        spdlog::error("detaching from {}: {}", target_.path, e.what());
    }
}

void Attachment::prepare(const std::string& pin) {
    if (!target_.name.empty() && !valid_attachment_name(target_.name))
        throw Error(ErrorKind::usage,
                    "\"" + target_.name + "\" cannot name an attachment: 1 to 64 letters, digits, '_', '.', '-', "
                    "not starting with s- or cg-",
                    {{"name", target_.name}});
    name_ = target_.name.empty() ? pin : target_.name;
    egress_->set_label(name_);
    egress_->use_netns(target_.netns.get());
}

void Attachment::record_holder() {
    holder_dir_ = sandbox_pin_root() + "/" + attachment_pin_name(target_.id) + "/holder-" + own_start_token();
    if (::mkdir(holder_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
        spdlog::warn("cannot record the holder of {}: {}", target_.path, std::strerror(errno));
        holder_dir_.clear();
    }
}

void Attachment::drop_holder() {
    if (!holder_dir_.empty()) ::rmdir(holder_dir_.c_str());
    holder_dir_.clear();
}

nlohmann::json Attachment::detach() {
    nlohmann::json extra = nlohmann::json::object();
    if (detached_) return extra;
    detached_ = true;
    drop_holder();  // the pin directory must be empty of it before the enforcer removes it
    egress_->unbind(extra);
    spdlog::info("detached policy {} from cgroup {}", policy_name_, target_.path);
    return extra;
}

nlohmann::json Attachment::info() const {
    auto pol = egress_->policy();
    nlohmann::json j = {{"name", name_}, {"cgroup", target_.path}, {"cgroup_id", target_.id}, {"policy", pol->name},
                        {"egress_denied", egress_->egress_denied()}, {"dns_port", egress_->dns_target().port4}};
    if (!target_.container.empty()) j["container"] = target_.container;
    if (target_.netns_id) j["netns"] = target_.netns_id;
    return j;
}

bool Attachment::cgroup_alive() const {
    struct stat st {};
    return ::stat(target_.path.c_str(), &st) == 0 && st.st_ino == target_.id;
}

void detach_cgroup(const std::string& cgroup_path, std::chrono::milliseconds wait) {
    AttachState s = attach_state(cgroup_path);
    if (!s.attached) {
        throw Error(ErrorKind::usage, "no policy is attached to cgroup " + cgroup_path, {{"path", cgroup_path}});
    }
    std::string pin = attachment_pin_name(s.cgroup_id);
    if (s.holder) {
        // The holder (a foreground `mcpwarden attach`) detaches itself on SIGTERM.
        ::kill(s.holder, SIGTERM);
        auto deadline = std::chrono::steady_clock::now() + wait;
        while (pinned_policy_id(pin) != 0 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (pinned_policy_id(pin) == 0) return;
        spdlog::warn("the holder {} of {} did not detach within {} ms; removing the attachment", s.holder,
                     cgroup_path, wait.count());
    }
    std::string dir = sandbox_pin_root() + "/" + pin;
    for (const auto& h : holders(dir)) ::rmdir((dir + "/" + h).c_str());
    remove_pinned_enforcement(pin);
}

}  // namespace mcpwarden
