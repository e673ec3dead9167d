// SPDX-License-Identifier: Apache-2.0
#include "enforcer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdarg>
#include <span>
#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "egress.hash.h"
#include "egress.skel.h"
#include "cgroup.h"
#include "error.h"

namespace mcpwarden {
namespace {

constexpr const char* kBpffs = "/sys/fs/bpf";

struct ProgSpec {
    const char* name;
    bpf_attach_type type;
};
constexpr ProgSpec kProgs[] = {
    {"connect4", BPF_CGROUP_INET4_CONNECT}, {"connect6", BPF_CGROUP_INET6_CONNECT},
    {"sendmsg4", BPF_CGROUP_UDP4_SENDMSG},  {"sendmsg6", BPF_CGROUP_UDP6_SENDMSG},
    {"sock_create", BPF_CGROUP_INET_SOCK_CREATE}, {"egress", BPF_CGROUP_INET_EGRESS},
    {"recvmsg4", BPF_CGROUP_UDP4_RECVMSG},  {"recvmsg6", BPF_CGROUP_UDP6_RECVMSG},
    {"getpeername4", BPF_CGROUP_INET4_GETPEERNAME}, {"getpeername6", BPF_CGROUP_INET6_GETPEERNAME},
};
// Attached to every sandbox cgroup without a link (attach_backstops), pinned with the others.
constexpr ProgSpec kBackstops[] = {
    {"backstop_connect4", BPF_CGROUP_INET4_CONNECT}, {"backstop_connect6", BPF_CGROUP_INET6_CONNECT},
    {"backstop_sendmsg4", BPF_CGROUP_UDP4_SENDMSG},  {"backstop_sendmsg6", BPF_CGROUP_UDP6_SENDMSG},
};
constexpr const char* kMaps[] = {"sandbox_state", "rules4", "rules6", "portsets", "events", "events_lost",
                                 "event_slot_owner", "dns_orig"};

// libbpf's messages, kept so a failed load can say what the verifier or kernel refused.
std::mutex g_log_mutex;
std::string g_libbpf_log;
int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    if (level == LIBBPF_DEBUG) return 0;
    // The verifier's log comes in one message; keep its end, where the reason is. The message
    // is formatted at its own size (measured on a copy of the arguments).
    va_list measure;
    va_copy(measure, args);
    int n = vsnprintf(nullptr, 0, fmt, measure);
    va_end(measure);
    if (n <= 0) return 0;
    std::string msg(static_cast<size_t>(n), '\0');
    vsnprintf(msg.data(), msg.size() + 1, fmt, args);
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_libbpf_log += msg;
    if (g_libbpf_log.size() > 8192) g_libbpf_log.erase(0, g_libbpf_log.size() - 8192);
    return 0;
}

std::string libbpf_tail() {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    std::string s = g_libbpf_log;
    if (s.size() > 1500) s = "..." + s.substr(s.size() - 1500);
    return s;
}

// Names the pin directory of this build: a hash of the embedded BPF object, taken at build
// time (cmake/BpfHash.cmake); hashing its bytes at every start cost a run about 0.3 ms.
const std::string& object_hash() {
    static const std::string hash = EGRESS_OBJECT_HASH;
    return hash;
}

void ensure_bpffs() {
    struct statfs st {};
    if (::statfs(kBpffs, &st) == 0 && st.f_type == BPF_FS_MAGIC) return;
    ::mkdir(kBpffs, 0700);
    if (::mount("bpf", kBpffs, "bpf", 0, "mode=0700") != 0) {
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text("bpffs is not mounted at /sys/fs/bpf and mounting it failed", errno) +
                        "; mount it (mount -t bpf bpf /sys/fs/bpf) so the egress programs can be pinned");
    }
}

void make_private_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot create " + path, errno));
    ::chmod(path.c_str(), 0700);
}

bool all_pinned(const std::string& dir) {
    for (const auto& p : kProgs) {
        if (::access((dir + "/prog_" + p.name).c_str(), F_OK) != 0) return false;
    }
    for (const auto& p : kBackstops) {
        if (::access((dir + "/prog_" + p.name).c_str(), F_OK) != 0) return false;
    }
    for (const auto* m : kMaps) {
        if (::access((dir + "/map_" + m).c_str(), F_OK) != 0) return false;
    }
    return true;
}

[[noreturn]] void load_failed(const std::string& what, int err) {
    throw Error(ErrorKind::sandbox_unavailable,
                "cannot load the egress BPF programs (" + what + ": " + std::strerror(err) +
                    "). mcpwarden needs cgroup BPF with sock_addr hooks (connect/sendmsg, Linux "
                    "4.18+), BPF links for cgroups (5.7+), ring buffers (5.8+), shared cgroup "
                    "storage (5.9+) and LPM tries; refusing to run the server unconfined.\n" +
                    libbpf_tail());
}

// Loads the object and pins programs and maps into dir (via a temporary directory renamed
// into place, so a reader never sees half a set).
void load_and_pin(const std::string& dir) {
    libbpf_set_print(libbpf_print);
    egress* skel = egress__open();
    if (!skel) load_failed("open", errno);
    std::unique_ptr<egress, void (*)(egress*)> guard(skel, egress__destroy);
    // The test entry point is loaded on demand by the tests, not pinned.
    bpf_program__set_autoload(skel->progs.mw_test_decide, false);
    if (int err = egress__load(skel); err != 0) load_failed("load", -err);

    std::string tmp = dir + "-tmp-" + std::to_string(::getpid());  // bpffs refuses names with dots
    make_private_dir(tmp);
    auto pin = [&](int err, const std::string& what) {
        if (err != 0) {
            load_failed("pin " + what, -err);
        }
    };
    struct bpf_program* progs[] = {skel->progs.mw_connect4, skel->progs.mw_connect6,
                                   skel->progs.mw_sendmsg4, skel->progs.mw_sendmsg6,
                                   skel->progs.mw_sock_create, skel->progs.mw_egress,
                                   skel->progs.mw_recvmsg4, skel->progs.mw_recvmsg6,
                                   skel->progs.mw_getpeername4, skel->progs.mw_getpeername6};
    for (size_t i = 0; i < std::size(kProgs); ++i) {
        pin(bpf_program__pin(progs[i], (tmp + "/prog_" + kProgs[i].name).c_str()), kProgs[i].name);
    }
    struct bpf_program* backstops[] = {skel->progs.mw_backstop_connect4, skel->progs.mw_backstop_connect6,
                                       skel->progs.mw_backstop_sendmsg4, skel->progs.mw_backstop_sendmsg6};
    for (size_t i = 0; i < std::size(kBackstops); ++i) {
        pin(bpf_program__pin(backstops[i], (tmp + "/prog_" + kBackstops[i].name).c_str()), kBackstops[i].name);
    }
    struct bpf_map* maps[] = {skel->maps.sandbox_state, skel->maps.rules4, skel->maps.rules6,
                              skel->maps.portsets, skel->maps.events, skel->maps.events_lost,
                              skel->maps.event_slot_owner, skel->maps.dns_orig};
    for (size_t i = 0; i < std::size(kMaps); ++i) {
        pin(bpf_map__pin(maps[i], (tmp + "/map_" + kMaps[i]).c_str()), kMaps[i]);
    }
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
        int err = errno;
        load_failed("publish pins in " + dir, err);
    }
}

}  // namespace

std::string sandbox_pin_root() { return std::string(kBpffs) + "/mcpwarden/sandboxes"; }

namespace {

std::vector<std::string> list_dir(const std::string& path) {
    std::vector<std::string> out;
    DIR* d = ::opendir(path.c_str());
    if (!d) return out;
    while (auto* e = ::readdir(d)) {
        if (e->d_name[0] != '.') out.push_back(e->d_name);
    }
    ::closedir(d);
    return out;
}

// Sets MW_SANDBOX_ENDED in a sandbox's cgroup storage, before its links go: from then on its
// backstops deny the sockets made in it (bpf/egress.bpf.c). No storage (nothing attached): no-op.
void mark_ended(int sandbox_state, std::uint64_t cgroup_id) {
    mw_sandbox_state st{};
    if (bpf_map_lookup_elem(sandbox_state, &cgroup_id, &st) != 0) return;
    st.flags |= MW_SANDBOX_ENDED;
    bpf_map_update_elem(sandbox_state, &cgroup_id, &st, 0);
}

// Unpins everything in a pin directory, then removes it. True when the directory is gone.
bool remove_pin_dir(const std::string& dir) {
    for (const auto& f : list_dir(dir)) ::unlink((dir + "/" + f).c_str());
    return ::rmdir(dir.c_str()) == 0;
}

// Every rule-map key and event slot of one policy id.
struct PolicyEntries {
    std::vector<mw_key4> v4;
    std::vector<mw_key6> v6;
    std::vector<mw_portset_key> portsets;
    std::vector<std::uint32_t> slots;
};

PolicyEntries find_policy_entries(int rules4, int rules6, int portsets, int slot_owner, std::uint64_t id) {
    PolicyEntries out;
    auto scan = [&](int fd, auto key, auto&& policy_of, auto& into) {
        decltype(key) cur{}, next{};
        void* prev = nullptr;
        while (bpf_map_get_next_key(fd, prev, &next) == 0) {
            if (policy_of(next) == id) into.push_back(next);
            cur = next;
            prev = &cur;
        }
    };
    auto lpm_id = [](const auto& k) {  // big-endian id after prefixlen
        std::uint64_t kid = 0;
        for (int i = 0; i < 8; ++i) kid = (kid << 8) | k.policy[i];
        return kid;
    };
    scan(rules4, mw_key4{}, lpm_id, out.v4);
    scan(rules6, mw_key6{}, lpm_id, out.v6);
    scan(portsets, mw_portset_key{}, [](const mw_portset_key& k) { return k.policy_id; }, out.portsets);
    for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS; ++slot) {
        mw_slot_owner owner{};
        if (bpf_map_lookup_elem(slot_owner, &slot, &owner) == 0 && owner.policy_id == id) out.slots.push_back(slot);
    }
    return out;
}

// Deletes every rule-map entry and the event ring of one policy id.
void delete_policy_entries(int rules4, int rules6, int portsets, int slot_owner, std::uint64_t id) {
    auto e = find_policy_entries(rules4, rules6, portsets, slot_owner, id);
    for (auto& k : e.v4) bpf_map_delete_elem(rules4, &k);
    for (auto& k : e.v6) bpf_map_delete_elem(rules6, &k);
    for (auto& k : e.portsets) bpf_map_delete_elem(portsets, &k);
    for (auto& slot : e.slots) bpf_map_delete_elem(slot_owner, &slot);
}

// Pin directories of other builds whose programs no link uses any more.
int sweep_old_builds(const std::string& current) {
    int removed = 0;
    std::string base = std::string(kBpffs) + "/mcpwarden";
    std::vector<std::uint32_t> linked;
    std::uint32_t id = 0;
    while (bpf_link_get_next_id(id, &id) == 0) {
        int fd = bpf_link_get_fd_by_id(id);
        if (fd < 0) continue;
        bpf_link_info info{};
        std::uint32_t len = sizeof info;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) linked.push_back(info.prog_id);
        ::close(fd);
    }
    for (const auto& name : list_dir(base)) {
        if (name.size() != 16 || base + "/" + name == current) continue;
        std::string dir = base + "/" + name;
        bool in_use = false;
        for (const auto& p : kProgs) {
            int fd = bpf_obj_get((dir + "/prog_" + p.name).c_str());
            if (fd < 0) continue;
            bpf_prog_info info{};
            std::uint32_t len = sizeof info;
            if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
                for (auto l : linked) in_use = in_use || l == info.id;
            }
            ::close(fd);
        }
        if (in_use) continue;
        if (remove_pin_dir(dir)) ++removed;
    }
    return removed;
}

}  // namespace

std::size_t count_policy_entries(std::uint64_t policy_id) {
    if (!all_pinned(BpfObjects::pin_root())) return 0;  // nothing loaded, nothing held
    auto objs = BpfObjects::open();
    auto e = find_policy_entries(objs->map("rules4"), objs->map("rules6"), objs->map("portsets"),
                                 objs->map("event_slot_owner"), policy_id);
    return e.v4.size() + e.v6.size() + e.portsets.size() + e.slots.size();
}

std::uint64_t pinned_policy_id(const std::string& pin_name) {
    std::string dir = sandbox_pin_root() + "/" + pin_name;
    if (::access(dir.c_str(), F_OK) != 0) return 0;
    for (const auto& f : list_dir(dir)) {
        if (f.rfind("policy-", 0) == 0) {
            try {
                return std::stoull(f.substr(7));
            } catch (...) {
                return 0;
            }
        }
    }
    return 0;
}

bool remove_pinned_enforcement(const std::string& pin_name) {
    std::string dir = sandbox_pin_root() + "/" + pin_name;
    if (::access(dir.c_str(), F_OK) != 0) return false;
    std::uint64_t policy = pinned_policy_id(pin_name);
    if (policy) mark_ended(BpfObjects::open()->map("sandbox_state"), policy);
    for (const auto& f : list_dir(dir)) {
        if (f.rfind("policy-", 0) == 0) ::rmdir((dir + "/" + f).c_str());
        else ::unlink((dir + "/" + f).c_str());  // detaches the link
    }
    ::rmdir(dir.c_str());
    if (policy) {
        auto objs = BpfObjects::open();
        delete_policy_entries(objs->map("rules4"), objs->map("rules6"), objs->map("portsets"),
                              objs->map("event_slot_owner"), policy);
    }
    return true;
}

namespace {

// Whether the cgroup with this id may still exist (on the unified hierarchy, by its kernfs file
// handle): false only when the kernel says it is gone; true too when that cannot be told.
bool cgroup_may_exist(std::uint64_t id) {
    static const std::string mount = CgroupLayout::detect().unified_mount;
    if (mount.empty()) return true;
    UniqueFd mount_fd(::open(mount.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!mount_fd) return true;
    struct {
        struct file_handle fh;
        std::uint64_t id;
    } handle{};
    handle.fh.handle_bytes = sizeof handle.id;
    handle.fh.handle_type = 0xfe;  // FILEID_KERNFS: the cgroup id
    handle.id = id;
    UniqueFd cg(::open_by_handle_at(mount_fd.get(), &handle.fh, O_RDONLY | O_CLOEXEC));
    return cg || errno != ESTALE;
}

// Whether the pinned enforcement may still confine a cgroup that exists: its policy id (the
// cgroup id it was bound with) and the cgroup each pinned link is attached to are checked.
bool pinned_cgroup_may_exist(const std::string& pin_name) {
    std::vector<std::uint64_t> ids;
    if (auto policy = pinned_policy_id(pin_name)) ids.push_back(policy);
    std::string dir = sandbox_pin_root() + "/" + pin_name;
    for (const auto& p : kProgs) {
        UniqueFd link(bpf_obj_get((dir + "/" + p.name).c_str()));
        if (!link) continue;
        bpf_link_info info{};
        std::uint32_t len = sizeof info;
        if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0) return true;
        if (info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id != 0) ids.push_back(info.cgroup.cgroup_id);
    }
    return std::any_of(ids.begin(), ids.end(), cgroup_may_exist);
}

}  // namespace

bool sweep_enforcement_of(const std::string& name) {
    // Its cgroup left in place (not swept, or its processes would not die): they stay confined.
    if (pinned_cgroup_may_exist(name)) {
        spdlog::warn("kept the pinned links of stale sandbox {}: its cgroup still exists", name);
        return false;
    }
    if (!remove_pinned_enforcement(name)) return false;
    spdlog::info("removed the pinned links and rules of stale sandbox {}", name);
    return true;
}

int sweep_stale_enforcement() {
    int removed = 0;
    for (const auto& name : list_dir(sandbox_pin_root())) {
        if (!sandbox_owner_alive(name) && sweep_enforcement_of(name)) ++removed;
    }
    return removed;
}

std::string BpfObjects::pin_root() { return std::string(kBpffs) + "/mcpwarden/" + object_hash(); }

namespace {

// Who uses the pinned objects is told by flock on the bpffs root: every process holding a
// BpfObjects keeps a shared lock, and the last user, once it lets go, takes it exclusively
// without waiting to remove the pins (remove_pins_if_unused). Loaders take turns on a second
// lock, on the mcpwarden directory (which cannot go away while they hold the first).
UniqueFd lock_dir(const std::string& path, int operation) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fd;
    while (::flock(fd.get(), operation) != 0) {
        if (errno != EINTR) return UniqueFd();
    }
    return fd;
}

// Removes the pins of every build, and the mcpwarden directory with them, when no process uses them
// and no sandbox or attachment outlived its holder (their links stay pinned under sandboxes/
// and keep enforcing; the next run or agent sweeps or adopts them, then removes everything).
void remove_pins_if_unused() {
    UniqueFd lock = lock_dir(kBpffs, LOCK_EX | LOCK_NB);
    if (!lock) return;  // another process uses them
    std::string base = std::string(kBpffs) + "/mcpwarden";
    if (!list_dir(sandbox_pin_root()).empty()) return;
    for (const auto& build : list_dir(base)) remove_pin_dir(base + "/" + build);
    ::rmdir(base.c_str());
}

}  // namespace

BpfObjects::~BpfObjects() {
    progs_.clear();
    maps_.clear();
    lock_.reset();
    try {
        remove_pins_if_unused();
    } catch (...) {
    }
}

std::shared_ptr<BpfObjects> BpfObjects::open() {
    static std::mutex mutex;
    static std::weak_ptr<BpfObjects> cached;
    std::lock_guard<std::mutex> lock(mutex);
    if (auto existing = cached.lock()) return existing;

    ensure_bpffs();
    std::string dir = pin_root();
    auto objs = std::shared_ptr<BpfObjects>(new BpfObjects());
    objs->lock_ = lock_dir(kBpffs, LOCK_SH);
    if (!objs->lock_) throw Error(ErrorKind::sandbox_unavailable, errno_text(std::string("cannot lock ") + kBpffs, errno));
    if (!all_pinned(dir)) {
        std::string base = std::string(kBpffs) + "/mcpwarden";
        make_private_dir(base);
        UniqueFd loader = lock_dir(base, LOCK_EX);
        if (!loader) throw Error(ErrorKind::sandbox_unavailable, errno_text("cannot lock " + base, errno));
        if (!all_pinned(dir)) {
            if (::access(dir.c_str(), F_OK) == 0) {
                spdlog::warn("incomplete BPF pin directory {}; reloading", dir);
                remove_pin_dir(dir);
            }
            load_and_pin(dir);
            spdlog::debug("loaded and pinned the egress programs in {}", dir);
            sweep_old_builds(dir);
        }
    }
    objs->pin_dir_ = dir;
    for (std::span<const ProgSpec> list : {std::span<const ProgSpec>(kProgs), std::span<const ProgSpec>(kBackstops)}) {
        for (const auto& p : list) {
            int fd = bpf_obj_get((dir + "/prog_" + p.name).c_str());
            if (fd < 0) load_failed(std::string("open pinned program ") + p.name, errno);
            objs->progs_.emplace_back(p.name, UniqueFd(fd));
        }
    }
    for (const auto* m : kMaps) {
        int fd = bpf_obj_get((dir + "/map_" + m).c_str());
        if (fd < 0) load_failed(std::string("open pinned map ") + m, errno);
        objs->maps_.emplace_back(m, UniqueFd(fd));
    }
    cached = objs;
    return objs;
}

int BpfObjects::prog(const std::string& name) const {
    for (const auto& [n, fd] : progs_) {
        if (n == name) return fd.get();
    }
    throw Error(ErrorKind::internal, "no BPF program " + name);
}

int BpfObjects::map(const std::string& name) const {
    for (const auto& [n, fd] : maps_) {
        if (n == name) return fd.get();
    }
    throw Error(ErrorKind::internal, "no BPF map " + name);
}

CgroupEnforcer::CgroupEnforcer(std::shared_ptr<BpfObjects> objects, int cgroup_fd,
                               std::uint64_t cgroup_id, const CompiledEgress& rules,
                               bool audit_only, EventHandler on_event, const std::string& pin_name,
                               DnsTarget dns, SharedEventRing* shared)
    : objects_(std::move(objects)), cgroup_id_(cgroup_id), on_event_(std::move(on_event)), shared_(shared) {
    try {
        if (!pin_name.empty()) {
            make_private_dir(sandbox_pin_root());
            link_pin_dir_ = sandbox_pin_root() + "/" + pin_name;
            make_private_dir(link_pin_dir_);
            // The policy id, for the sweep after a crash (bpffs holds no regular files).
            make_private_dir(link_pin_dir_ + "/policy-" + std::to_string(cgroup_id_));
        }
        // 1. The sandbox's own audit ring buffer: claim a free slot of the pool (or route its
        //    events from the shared ring).
        if (shared_) use_shared_ring(pin_name, false);
        else open_ring(pin_name, false);

        // 2. Rules, keyed by this sandbox's policy id (= its cgroup id).
        compiled_ = rules;
        install(rules);

        // 3. Links on the cgroup. Until step 4 binds the policy, the programs deny everything.
        for (const auto& p : kProgs) {
            int fd = bpf_link_create(objects_->prog(p.name), cgroup_fd, p.type, nullptr);
            if (fd < 0) {
                int err = errno;
                std::string msg = errno_text(std::string("cannot attach the ") + p.name +
                                                 " program to the sandbox cgroup", err);
                if (err == EPERM)
                    msg += "; a parent cgroup may hold a BPF program attached without multi-attach "
                           "(systemd IPAddressDeny= on a unit without Delegate=yes)";
                if (err == EINVAL || err == ENOTSUP)
                    msg += "; the kernel lacks BPF links for cgroups (Linux 5.7+)";
                throw Error(ErrorKind::sandbox_unavailable, msg + ". Refusing to run the server unconfined");
            }
            UniqueFd link(fd);
            if (link_pin_dir_.empty()) {
                links_.push_back(std::move(link));
            } else if (bpf_obj_pin(fd, (link_pin_dir_ + "/" + p.name).c_str()) != 0) {
                load_failed(std::string("pin the ") + p.name + " link", errno);
            }
            // A pinned link is held by its pin (release() unlinks it, which detaches): no
            // descriptor per link and sandbox stays open in the process.
        }

        // 4. Bind: the storage exists once a program is attached.
        mw_sandbox_state state{};
        state.policy_id = cgroup_id_;
        state.flags = audit_only ? MW_SANDBOX_AUDIT_ONLY : 0;
        state.event_slot = shared_ ? shared_->slot_for(cgroup_id_) : event_slot_ + 1;
        state.dns_ip4 = dns.ip4;
        state.dns_port4 = dns.port4;
        state.dns_port6 = dns.port6;
        if (bpf_map_update_elem(objects_->map("sandbox_state"), &cgroup_id_, &state, 0) != 0)
            load_failed("bind the policy to the sandbox cgroup", errno);
    } catch (...) {
        release();
        throw;
    }
}

void CgroupEnforcer::open_ring(const std::string& name, bool adopt) {
    if (adopt) {
        int owners = objects_->map("event_slot_owner");
        for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS && event_slot_ == kNoSlot; ++slot) {
            mw_slot_owner owner{};
            if (bpf_map_lookup_elem(owners, &slot, &owner) == 0 && owner.policy_id == cgroup_id_ &&
                name == std::string(owner.sandbox, strnlen(owner.sandbox, sizeof owner.sandbox))) {
                std::uint32_t id = 0;
                if (bpf_map_lookup_elem(objects_->map("events"), &slot, &id) != 0) break;
                ringbuf_.reset(bpf_map_get_fd_by_id(id));
                if (!ringbuf_) load_failed("open an audit ring buffer", errno);
                event_slot_ = slot;
            }
        }
        if (event_slot_ == kNoSlot) claim_event_slot(name);
    } else {
        claim_event_slot(name);
    }
    rb_ = ring_buffer__new(
        ringbuf_.get(),
        [](void* ctx, void* data, size_t size) -> int {
            auto* self = static_cast<CgroupEnforcer*>(ctx);
            if (size >= sizeof(mw_event) && self->on_event_ && self->events_live_)
                self->on_event_(*static_cast<const mw_event*>(data));
            return 0;
        },
        this, nullptr);
    if (!rb_) load_failed("open the audit ring buffer", errno);
    // Whatever a crashed earlier holder of a fresh slot left is not ours; an adopted slot's
    // pending events are this sandbox's own and are delivered.
    if (!adopt) ring_buffer__consume(rb_);
    events_live_ = true;
}

namespace {

std::string tagged(int family, const void* key, size_t size) {
    return std::string(1, family == AF_INET ? '4' : '6') + std::string(static_cast<const char*>(key), size);
}

void rebase_ports(mw_rule_value& v, std::uint32_t base) {
    for (auto* list : {&v.deny[0], &v.deny[1], &v.allow[0], &v.allow[1]}) {
        if (list->n == MW_PORTS_BITMAP) list->set_id += base;
    }
}

constexpr std::uint32_t kLearnedSetIds = 1u << 24;  // EgressExtension's learned port sets
constexpr std::uint32_t kSetGeneration = 1u << 23;  // the alternate base of compiled sets

}  // namespace

CgroupEnforcer::CgroupEnforcer(Adopt, std::shared_ptr<BpfObjects> objects, std::uint64_t cgroup_id,
                               const CompiledEgress& rules, bool audit_only, EventHandler on_event,
                               const std::string& pin_name, SharedEventRing* shared)
    : objects_(std::move(objects)), cgroup_id_(cgroup_id), on_event_(std::move(on_event)), shared_(shared) {
    link_pin_dir_ = sandbox_pin_root() + "/" + pin_name;
    if (pinned_policy_id(pin_name) != cgroup_id)
        throw Error(ErrorKind::sandbox_unavailable,
                    "no enforcement of policy id " + std::to_string(cgroup_id) + " is pinned at " + link_pin_dir_);
    try {
        // The pins hold the links in force (release() unlinks them); they are only checked here.
        for (const auto& p : kProgs) {
            UniqueFd link(bpf_obj_get((link_pin_dir_ + "/" + p.name).c_str()));
            if (!link) load_failed(std::string("open the pinned ") + p.name + " link of " + pin_name, errno);
        }
        if (shared_) use_shared_ring(pin_name, true);
        else open_ring(pin_name, true);
        // What the predecessor installed: every entry under the policy id. Host entries the
        // rules do not account for are addresses it learned from DNS.
        int r4 = objects_->map("rules4"), r6 = objects_->map("rules6"), ps = objects_->map("portsets");
        auto found = find_policy_entries(r4, r6, ps, objects_->map("event_slot_owner"), cgroup_id_);
        std::unordered_set<std::string> compiled_keys;
        for (const auto& [k, v] : rules.v4) compiled_keys.insert(tagged(AF_INET, &k, sizeof k));
        for (const auto& [k, v] : rules.v6) compiled_keys.insert(tagged(AF_INET6, &k, sizeof k));
        auto classify = [&](int fd, const auto& key, int family, auto& installed) {
            std::string t = tagged(family, &key, sizeof key);
            mw_rule_value value{};
            bool host = key.prefixlen == 64 + (family == AF_INET ? 32u : 128u);
            if (host && !compiled_keys.count(t) && bpf_map_lookup_elem(fd, &key, &value) == 0) {
                LearnedEntry e;
                e.family = family;
                if constexpr (sizeof key == sizeof(mw_key4)) e.key4 = key;
                else e.key6 = key;
                e.value = value;
                adopted_learned_.push_back(e);
                learned_keys_.push_back(t);
            } else {
                installed.push_back({key, {}});
            }
        };
        for (const auto& k : found.v4) classify(r4, k, AF_INET, installed_.v4);
        for (const auto& k : found.v6) classify(r6, k, AF_INET6, installed_.v6);
        LearnedEntry learned_sets;  // port sets of learned entries: kept while those are
        for (const auto& k : found.portsets) {
            if (k.set_id >= kLearnedSetIds) {
                mw_portset set{};
                if (bpf_map_lookup_elem(ps, &k, &set) == 0) learned_sets.portsets.push_back({k, set});
                learned_sets_.push_back(k);
            } else {
                if (k.set_id >= kSetGeneration) set_base_ = kSetGeneration;
                installed_.portsets.push_back({k, {}});
            }
        }
        if (!learned_sets.portsets.empty()) adopted_learned_.push_back(std::move(learned_sets));
        installed_.policy_id = cgroup_id_;
        update_rules(rules, adopted_learned_, audit_only);
    } catch (...) {
        // Adoption failed: the pins stay (enforcement continues) for a later attempt or sweep.
        link_pin_dir_.clear();
        event_slot_ = kNoSlot;
        installed_ = {};
        learned_keys_.clear();
        learned_sets_.clear();
        release();
        throw;
    }
}

DnsTarget CgroupEnforcer::dns_target() const {
    mw_sandbox_state state{};
    DnsTarget t;
    if (bpf_map_lookup_elem(objects_->map("sandbox_state"), &cgroup_id_, &state) == 0) {
        t.ip4 = state.dns_ip4;
        t.port4 = state.dns_port4;
        t.port6 = state.dns_port6;
    }
    return t;
}

void CgroupEnforcer::set_dns_target(DnsTarget dns) {
    mw_sandbox_state state{};
    if (bpf_map_lookup_elem(objects_->map("sandbox_state"), &cgroup_id_, &state) != 0)
        load_failed("read the sandbox state", errno);
    if (state.dns_ip4 == dns.ip4 && state.dns_port4 == dns.port4 && state.dns_port6 == dns.port6) return;
    state.dns_ip4 = dns.ip4;
    state.dns_port4 = dns.port4;
    state.dns_port6 = dns.port6;
    if (bpf_map_update_elem(objects_->map("sandbox_state"), &cgroup_id_, &state, 0) != 0)
        load_failed("redirect the sandbox's DNS", errno);
}

CgroupEnforcer::~CgroupEnforcer() { release(); }

void CgroupEnforcer::install(const CompiledEgress& rules) {
    int r4 = objects_->map("rules4"), r6 = objects_->map("rules6"), ps = objects_->map("portsets");
    installed_.policy_id = cgroup_id_;
    auto fail = [&](const char* what) {
        int err = errno;
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text(std::string("cannot write the policy into the ") + what + " map", err) +
                        (err == E2BIG || err == ENOSPC ? " (the map is full: too many rules across running sandboxes)" : ""));
    };
    for (const auto& [k, v] : rules.portsets) {
        mw_portset_key key = k;
        key.policy_id = cgroup_id_;
        if (bpf_map_update_elem(ps, &key, &v, BPF_ANY) != 0) fail("port set");
        installed_.portsets.push_back({key, {}});
    }
    for (const auto& [k, v] : rules.v4) {
        if (bpf_map_update_elem(r4, &k, &v, BPF_ANY) != 0) fail("IPv4 rules");
        installed_.v4.push_back({k, {}});
    }
    for (const auto& [k, v] : rules.v6) {
        if (bpf_map_update_elem(r6, &k, &v, BPF_ANY) != 0) fail("IPv6 rules");
        installed_.v6.push_back({k, {}});
    }
}

void CgroupEnforcer::remove(const CompiledEgress& rules) {
    int r4 = objects_->map("rules4"), r6 = objects_->map("rules6"), ps = objects_->map("portsets");
    for (const auto& [k, v] : rules.v4) bpf_map_delete_elem(r4, &k);
    for (const auto& [k, v] : rules.v6) bpf_map_delete_elem(r6, &k);
    for (const auto& [k, v] : rules.portsets) bpf_map_delete_elem(ps, &k);
}

void CgroupEnforcer::update_rules(const CompiledEgress& rules, const std::vector<LearnedEntry>& learned,
                                  bool audit_only) {
    int r4 = objects_->map("rules4"), r6 = objects_->map("rules6"), ps = objects_->map("portsets");
    auto fail = [&](const char* what) {
        int err = errno;
        throw Error(ErrorKind::sandbox_unavailable,
                    errno_text(std::string("cannot write the new policy into the ") + what + " map", err) +
                        (err == E2BIG || err == ENOSPC ? " (the map is full)" : ""));
    };
    // The new compiled port sets take the ids the installed entries do not use.
    std::uint32_t base = set_base_ == 0 ? kSetGeneration : 0;
    CompiledEgress next = rules;
    next.policy_id = cgroup_id_;
    for (auto& [k, v] : next.portsets) {  // compile_egress numbers its sets from 1
        k.policy_id = cgroup_id_;
        k.set_id += base;
    }
    for (auto& [k, v] : next.v4) rebase_ports(v, base);
    for (auto& [k, v] : next.v6) rebase_ports(v, base);

    struct Entry {
        int family;
        const void* key;
        const mw_rule_value* value;
        std::uint32_t prefixlen;
    };
    std::map<std::string, Entry> want;
    for (const auto& [k, v] : next.v4) want[tagged(AF_INET, &k, sizeof k)] = {AF_INET, &k, &v, k.prefixlen};
    for (const auto& [k, v] : next.v6) want[tagged(AF_INET6, &k, sizeof k)] = {AF_INET6, &k, &v, k.prefixlen};
    std::vector<std::string> new_learned_keys;
    std::vector<mw_portset_key> new_learned_sets;
    for (const auto& e : learned) {
        if (e.family == AF_INET) {
            new_learned_keys.push_back(tagged(AF_INET, &e.key4, sizeof e.key4));
            want[new_learned_keys.back()] = {AF_INET, &e.key4, &e.value, e.key4.prefixlen};
        } else if (e.family == AF_INET6) {
            new_learned_keys.push_back(tagged(AF_INET6, &e.key6, sizeof e.key6));
            want[new_learned_keys.back()] = {AF_INET6, &e.key6, &e.value, e.key6.prefixlen};
        }
    }
    // 1. Port sets under ids no installed entry refers to.
    std::unordered_set<std::string> sets_now;
    auto set_bytes = [](const mw_portset_key& k) { return std::string(reinterpret_cast<const char*>(&k), sizeof k); };
    for (const auto& [k, v] : next.portsets) {
        if (bpf_map_update_elem(ps, &k, &v, BPF_ANY) != 0) fail("port set");
        sets_now.insert(set_bytes(k));
    }
    for (const auto& e : learned) {
        for (const auto& [k, v] : e.portsets) {
            if (bpf_map_update_elem(ps, &k, &v, BPF_ANY) != 0) fail("port set");
            sets_now.insert(set_bytes(k));
            new_learned_sets.push_back(k);
        }
    }
    // 2. Entries, longest prefix first: a lookup that meets a new entry meets the new policy's
    // longest match for its address.
    std::vector<const Entry*> order;
    for (const auto& [t, e] : want) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->prefixlen > b->prefixlen; });
    for (const auto* e : order) {
        if (bpf_map_update_elem(e->family == AF_INET ? r4 : r6, e->key, e->value, BPF_ANY) != 0)
            fail(e->family == AF_INET ? "IPv4 rules" : "IPv6 rules");
    }
    // 3. Entries only the old policy had, shortest prefix first: a lookup that meets an old
    // entry still meets the old policy's longest match for its address.
    struct Doomed {
        int family;
        std::string key;
        std::uint32_t prefixlen;
    };
    std::vector<Doomed> doomed;
    auto consider = [&](const std::string& t) {
        if (want.count(t)) return;
        std::uint32_t plen = 0;
        std::memcpy(&plen, t.data() + 1, sizeof plen);
        doomed.push_back({t[0] == '4' ? AF_INET : AF_INET6, t.substr(1), plen});
    };
    for (const auto& [k, v] : installed_.v4) consider(tagged(AF_INET, &k, sizeof k));
    for (const auto& [k, v] : installed_.v6) consider(tagged(AF_INET6, &k, sizeof k));
    for (const auto& t : learned_keys_) consider(t);
    std::stable_sort(doomed.begin(), doomed.end(), [](const Doomed& a, const Doomed& b) { return a.prefixlen < b.prefixlen; });
    for (const auto& d : doomed) bpf_map_delete_elem(d.family == AF_INET ? r4 : r6, d.key.data());
    // 4. Port sets no entry refers to any more. The ones this swap replaced are kept until the
    // next one: a program run may be between its lookup of an entry deleted in step 3 and that
    // of the entry's port set (a missing set would deny). Those replaced by the previous swap
    // go now, unless the new policy reuses their ids.
    for (const auto& k : retired_sets_) {
        if (!sets_now.count(set_bytes(k))) bpf_map_delete_elem(ps, &k);
    }
    retired_sets_.clear();
    for (const auto& [k, v] : installed_.portsets) {
        if (!sets_now.count(set_bytes(k))) retired_sets_.push_back(k);
    }
    for (const auto& k : learned_sets_) {  // the same holds for port sets learned from DNS
        if (!sets_now.count(set_bytes(k))) retired_sets_.push_back(k);
    }

    installed_ = {};
    installed_.policy_id = cgroup_id_;
    for (const auto& [k, v] : next.v4) installed_.v4.push_back({k, {}});
    for (const auto& [k, v] : next.v6) installed_.v6.push_back({k, {}});
    for (const auto& [k, v] : next.portsets) installed_.portsets.push_back({k, {}});
    compiled_ = std::move(next);
    set_base_ = base;
    learned_keys_ = std::move(new_learned_keys);
    learned_sets_ = std::move(new_learned_sets);

    mw_sandbox_state state{};
    std::uint32_t flags = audit_only ? MW_SANDBOX_AUDIT_ONLY : 0;
    if (bpf_map_lookup_elem(objects_->map("sandbox_state"), &cgroup_id_, &state) == 0 && state.flags != flags) {
        state.flags = flags;
        if (bpf_map_update_elem(objects_->map("sandbox_state"), &cgroup_id_, &state, 0) != 0)
            load_failed(audit_only ? "switch the sandbox to audit-only" : "switch the sandbox from audit-only to enforcing",
                        errno);
    }
}

namespace {

// Claims a free slot of the pool for `owner` (the kernel makes the insert atomic: of concurrent
// claimers, one wins each slot) and opens its ring buffer, creating it on the slot's first use
// (it stays for later holders). False when every slot is taken.
bool claim_slot(const BpfObjects& objects, const mw_slot_owner& owner, std::uint32_t& slot_out, UniqueFd& ring) {
    int owners = objects.map("event_slot_owner");
    int events = objects.map("events");
    for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS; ++slot) {
        if (bpf_map_update_elem(owners, &slot, &owner, BPF_NOEXIST) != 0) continue;
        slot_out = slot;
        std::uint32_t id = 0;
        if (bpf_map_lookup_elem(events, &slot, &id) == 0) {
            ring.reset(bpf_map_get_fd_by_id(id));
        } else {
            ring.reset(bpf_map_create(BPF_MAP_TYPE_RINGBUF, "mw_audit", 0, 0, 256 * 1024, nullptr));
            if (!ring) load_failed("create an audit ring buffer", errno);
            std::uint32_t fd = static_cast<std::uint32_t>(ring.get());
            if (bpf_map_update_elem(events, &slot, &fd, BPF_ANY) != 0) load_failed("register an audit ring buffer", errno);
        }
        if (!ring) load_failed("open an audit ring buffer", errno);
        return true;
    }
    return false;
}

[[noreturn]] void slots_exhausted() {
    throw Error(ErrorKind::sandbox_unavailable,
                "all " + std::to_string(MW_EVENT_SLOTS) + " audit ring buffers are in use by running sandboxes; "
                "denials could not be audited, so the sandbox is refused. Wait for sandboxes to end");
}

// Delivers (or, with no handler, discards) what a ring buffer holds.
void drain_ring(int ring_fd, const std::function<void(const mw_event&)>* handler) {
    auto* rb = ring_buffer__new(
        ring_fd,
        [](void* ctx, void* data, size_t size) -> int {
            auto* h = static_cast<const std::function<void(const mw_event&)>*>(ctx);
            if (h && *h && size >= sizeof(mw_event)) (*h)(*static_cast<const mw_event*>(data));
            return 0;
        },
        const_cast<std::function<void(const mw_event&)>*>(handler), nullptr);
    if (!rb) return;
    ring_buffer__consume(rb);
    ring_buffer__free(rb);
}

constexpr std::uint64_t kSharedOwnerBit = 1ull << 63;  // owner.policy_id of a shared slot: no cgroup id

}  // namespace

void CgroupEnforcer::claim_event_slot(const std::string& name) {
    mw_slot_owner owner{};
    std::snprintf(owner.sandbox, sizeof owner.sandbox, "%s", name.c_str());
    owner.policy_id = cgroup_id_;
    if (!claim_slot(*objects_, owner, event_slot_, ringbuf_)) slots_exhausted();
}

void CgroupEnforcer::use_shared_ring(const std::string& name, bool adopt) {
    auto handler = on_event_;
    shared_->route(cgroup_id_, [handler](const mw_event& e) {
        if (handler) handler(e);
    });
    if (!adopt) return;
    // The adopted sandbox writes into the shared ring from now on; a slot of its own (held for it
    // by a predecessor that did not share) is drained into the handler and given back.
    mw_sandbox_state state{};
    if (bpf_map_lookup_elem(objects_->map("sandbox_state"), &cgroup_id_, &state) == 0) {
        state.event_slot = shared_->slot_for(cgroup_id_);
        if (bpf_map_update_elem(objects_->map("sandbox_state"), &cgroup_id_, &state, 0) != 0)
            load_failed("point the adopted sandbox at the shared audit ring", errno);
    }
    int owners = objects_->map("event_slot_owner");
    for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS; ++slot) {
        mw_slot_owner owner{};
        if (bpf_map_lookup_elem(owners, &slot, &owner) != 0 || owner.policy_id != cgroup_id_ ||
            name != std::string(owner.sandbox, strnlen(owner.sandbox, sizeof owner.sandbox)))
            continue;
        std::uint32_t id = 0;
        if (bpf_map_lookup_elem(objects_->map("events"), &slot, &id) == 0) {
            UniqueFd ring(bpf_map_get_fd_by_id(id));
            if (ring) drain_ring(ring.get(), &on_event_);
        }
        bpf_map_delete_elem(owners, &slot);
    }
}

SharedEventRing::SharedEventRing(std::shared_ptr<BpfObjects> objects, const std::string& owner_tag, std::size_t slots)
    : objects_(std::move(objects)) {
    int owners = objects_->map("event_slot_owner");
    int events = objects_->map("events");
    mw_slot_owner mine{};
    std::snprintf(mine.sandbox, sizeof mine.sandbox, "%s", owner_tag.c_str());
    mine.policy_id = kSharedOwnerBit | static_cast<std::uint64_t>(::getpid());
    std::string tag(mine.sandbox);
    try {
        // 1. Slots a dead predecessor with the same tag held: their pending events belong to the
        //    sandboxes about to be adopted.
        for (std::uint32_t slot = 0; slot < MW_EVENT_SLOTS && slots_.size() < slots; ++slot) {
            mw_slot_owner o{};
            if (bpf_map_lookup_elem(owners, &slot, &o) != 0 || !(o.policy_id & kSharedOwnerBit) ||
                tag != std::string(o.sandbox, strnlen(o.sandbox, sizeof o.sandbox)))
                continue;
            pid_t pid = static_cast<pid_t>(o.policy_id & ~kSharedOwnerBit);
            if (pid != ::getpid() && (::kill(pid, 0) == 0 || errno != ESRCH)) continue;  // alive
            std::uint32_t id = 0;
            if (bpf_map_lookup_elem(events, &slot, &id) != 0) continue;
            UniqueFd ring(bpf_map_get_fd_by_id(id));
            if (!ring || bpf_map_update_elem(owners, &slot, &mine, BPF_EXIST) != 0) continue;
            slots_.push_back(slot);
            rings_.push_back(std::move(ring));
        }
        // 2. Fresh slots for the rest; whatever an earlier holder left in them is not ours.
        while (slots_.size() < slots) {
            std::uint32_t slot = 0;
            UniqueFd ring;
            if (!claim_slot(*objects_, mine, slot, ring)) slots_exhausted();
            drain_ring(ring.get(), nullptr);
            slots_.push_back(slot);
            rings_.push_back(std::move(ring));
        }
        for (std::size_t i = 0; i < rings_.size(); ++i) {
            auto cb = [](void* ctx, void* data, size_t size) -> int {
                auto* self = static_cast<SharedEventRing*>(ctx);
                if (size < sizeof(mw_event)) return 0;
                const auto& e = *static_cast<const mw_event*>(data);
                auto it = self->routes_.find(e.policy_id);
                if (it == self->routes_.end()) ++self->unrouted_;
                else it->second(e);
                return 0;
            };
            int rc = 0;
            if (!rb_) {
                rb_ = ring_buffer__new(rings_[i].get(), cb, this, nullptr);
                if (!rb_) rc = -errno;
            } else {
                rc = ring_buffer__add(rb_, rings_[i].get(), cb, this);
            }
            if (rc != 0) load_failed("open the shared audit ring buffer", -rc);
        }
    } catch (...) {
        if (rb_) ring_buffer__free(rb_);
        rb_ = nullptr;
        for (auto slot : slots_) bpf_map_delete_elem(owners, &slot);
        throw;
    }
}

SharedEventRing::~SharedEventRing() {
    if (rb_) ring_buffer__free(rb_);
    // Slots still pointed at by sandboxes that outlive us stay claimed for the next owner (an
    // adopted sandbox keeps writing into them); a clean stop ended every sandbox first.
    int owners = objects_->map("event_slot_owner");
    for (auto slot : slots_) bpf_map_delete_elem(owners, &slot);
}

int SharedEventRing::events_fd() const { return rb_ ? ring_buffer__epoll_fd(rb_) : -1; }

void SharedEventRing::consume() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (rb_) ring_buffer__consume(rb_);
}

std::uint32_t SharedEventRing::slot_for(std::uint64_t policy_id) const {
    return slots_[policy_id % slots_.size()] + 1;
}

void SharedEventRing::route(std::uint64_t policy_id, EventHandler handler) {
    std::lock_guard<std::mutex> lock(mutex_);
    routes_[policy_id] = std::move(handler);
}

void SharedEventRing::unroute(std::uint64_t policy_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    routes_.erase(policy_id);
}

void CgroupEnforcer::put_learned(const LearnedEntry& e) {
    for (const auto& [k, v] : e.portsets) {
        if (bpf_map_update_elem(objects_->map("portsets"), &k, &v, BPF_ANY) != 0)
            throw Error(ErrorKind::internal, errno_text("cannot write a learned port set", errno));
    }
    for (const auto& [k, v] : e.portsets) learned_sets_.push_back(k);
    int err = e.family == AF_INET ? bpf_map_update_elem(objects_->map("rules4"), &e.key4, &e.value, BPF_ANY)
                                  : bpf_map_update_elem(objects_->map("rules6"), &e.key6, &e.value, BPF_ANY);
    if (err != 0) throw Error(ErrorKind::internal, errno_text("cannot write a learned address", errno));
    std::string t = e.family == AF_INET ? tagged(AF_INET, &e.key4, sizeof e.key4) : tagged(AF_INET6, &e.key6, sizeof e.key6);
    if (std::find(learned_keys_.begin(), learned_keys_.end(), t) == learned_keys_.end()) learned_keys_.push_back(t);
}

void CgroupEnforcer::drop_learned(const LearnedEntry& e) {
    for (const auto& entry : e.portsets) {
        const mw_portset_key& k = entry.first;
        std::erase_if(learned_sets_, [&](const mw_portset_key& x) { return std::memcmp(&x, &k, sizeof k) == 0; });
    }
    if (e.family != 0) {
        std::string t = e.family == AF_INET ? tagged(AF_INET, &e.key4, sizeof e.key4) : tagged(AF_INET6, &e.key6, sizeof e.key6);
        std::erase(learned_keys_, t);
    }
    if (e.family == 0) {  // port sets only
        for (const auto& [k, v] : e.portsets) bpf_map_delete_elem(objects_->map("portsets"), &k);
        return;
    }
    // A learned /32 or /128 may stand on a compiled entry of the same prefix: restore it.
    if (e.family == AF_INET) {
        bool restored = false;
        for (const auto& [k, v] : compiled_.v4) {
            if (std::memcmp(&k, &e.key4, sizeof k) == 0) {
                bpf_map_update_elem(objects_->map("rules4"), &k, &v, BPF_ANY);
                restored = true;
            }
        }
        if (!restored) bpf_map_delete_elem(objects_->map("rules4"), &e.key4);
    } else {
        bool restored = false;
        for (const auto& [k, v] : compiled_.v6) {
            if (std::memcmp(&k, &e.key6, sizeof k) == 0) {
                bpf_map_update_elem(objects_->map("rules6"), &k, &v, BPF_ANY);
                restored = true;
            }
        }
        if (!restored) bpf_map_delete_elem(objects_->map("rules6"), &e.key6);
    }
    for (const auto& [k, v] : e.portsets) bpf_map_delete_elem(objects_->map("portsets"), &k);
}

int CgroupEnforcer::events_fd() const { return rb_ ? ring_buffer__epoll_fd(rb_) : -1; }

void CgroupEnforcer::consume_events() {
    if (rb_) ring_buffer__consume(rb_);
    else if (shared_ && !released_) shared_->consume();
}

void CgroupEnforcer::stop_events() {
    if (shared_) shared_->unroute(cgroup_id_);
}

EgressCounters CgroupEnforcer::counters() const {
    mw_sandbox_state state{};
    EgressCounters c;
    if (!released_ && bpf_map_lookup_elem(objects_->map("sandbox_state"), &cgroup_id_, &state) == 0) {
        c.denied = state.denied;
        c.audited = state.audited;
        c.lost = state.lost;
        c.suppressed = state.suppressed;
        c.suppressed_socket = state.suppressed_socket;
    }
    return c;
}

void CgroupEnforcer::attach_backstops(int cgroup_fd) {
    for (const auto& p : kBackstops) {
        if (bpf_prog_attach(objects_->prog(p.name), cgroup_fd, p.type, BPF_F_ALLOW_MULTI) != 0) {
            int err = errno;
            throw Error(ErrorKind::sandbox_unavailable,
                        errno_text(std::string("cannot attach the ") + p.name + " program to the sandbox cgroup", err) +
                            ". Refusing to run the server unconfined");
        }
    }
}

void CgroupEnforcer::release() {
    if (released_) return;
    released_ = true;
    // The sockets made in the sandbox may live on in other processes: once its links are gone,
    // its backstops deny them.
    if (cgroup_id_ != 0) mark_ended(objects_->map("sandbox_state"), cgroup_id_);
    // Each link is detached from the cgroup here and now (BPF_LINK_DETACH, Linux 5.9+): removing
    // its last pin alone frees it later, from a kernel work queue, and until then its programs
    // still run on the cgroup, seeing the sandbox ended and denying everything (a detached
    // cgroup would refuse connections for a while after `detach` returned).
    if (!link_pin_dir_.empty()) {
        for (const auto& p : kProgs) {
            std::string pin = link_pin_dir_ + "/" + p.name;
            UniqueFd link(bpf_obj_get(pin.c_str()));
            if (link) bpf_link_detach(link.get());
            ::unlink(pin.c_str());
        }
        ::rmdir((link_pin_dir_ + "/policy-" + std::to_string(cgroup_id_)).c_str());
        ::rmdir(link_pin_dir_.c_str());
    }
    for (const auto& link : links_) bpf_link_detach(link.get());
    links_.clear();
    stop_events();
    if (rb_) {
        ring_buffer__consume(rb_);
        ring_buffer__free(rb_);
        rb_ = nullptr;
    }
    ringbuf_.reset();
    if (event_slot_ != kNoSlot) bpf_map_delete_elem(objects_->map("event_slot_owner"), &event_slot_);
    remove(installed_);
    installed_ = {};
    for (const auto& t : learned_keys_)
        bpf_map_delete_elem(objects_->map(t[0] == '4' ? "rules4" : "rules6"), t.data() + 1);
    for (const auto& k : learned_sets_) bpf_map_delete_elem(objects_->map("portsets"), &k);
    for (const auto& k : retired_sets_) bpf_map_delete_elem(objects_->map("portsets"), &k);
    learned_keys_.clear();
    learned_sets_.clear();
    retired_sets_.clear();
}

}  // namespace mcpwarden
