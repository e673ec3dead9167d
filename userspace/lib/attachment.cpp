// SPDX-License-Identifier: Apache-2.0
#include "attachment.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <thread>

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

}  // namespace

std::string attachment_pin_name(std::uint64_t cgroup_id) { return "cg-" + std::to_string(cgroup_id); }

AttachTarget open_attach_target(const std::string& given) {
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
    egress_->bind(target_.fd.get(), target_.id, pin, loop);
    if (holder) record_holder();
    spdlog::info("attached policy {} to cgroup {} (id {})", policy.name, target_.path, target_.id);
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
    egress_->adopt(target_.id, pin, loop);
    if (holder) record_holder();
}

Attachment::~Attachment() {
    try {
        detach();
    } catch (const std::exception& e) {
        spdlog::error("detaching from {}: {}", target_.path, e.what());
    }
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
    return {{"cgroup", target_.path}, {"cgroup_id", target_.id}, {"policy", pol->name},
            {"egress_denied", egress_->egress_denied()}, {"dns_port", egress_->dns_target().port4}};
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
