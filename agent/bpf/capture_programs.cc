#include "agent/bpf/capture_programs.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdarg>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "agent/bpf/bpffs.h"
#include "cgroup_sock.skel.h"
#include "common/bpf_pins.h"
#include "sk_lookup.skel.h"

namespace nodemesh::agent {

namespace fs = std::filesystem;

namespace {

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof(buf), format, args);
  if (n > 0 && buf[std::min<size_t>(n, sizeof(buf) - 1) - 1] == '\n') {
    buf[std::min<size_t>(n, sizeof(buf) - 1) - 1] = '\0';
  }
  switch (level) {
    case LIBBPF_WARN:
      spdlog::warn("libbpf: {}", buf);
      break;
    case LIBBPF_INFO:
      spdlog::debug("libbpf: {}", buf);
      break;
    case LIBBPF_DEBUG:
      spdlog::trace("libbpf: {}", buf);
      break;
  }
  return n;
}

nm_ip toNmIp(const IpAddress& ip) {
  nm_ip out{};
  std::memcpy(out.addr, ip.bytes().data(), 16);
  return out;
}

// A link pinned by an earlier run, or null. Checks first: libbpf warns on every miss.
bpf_link* openPinnedLink(const std::string& pin) {
  std::error_code ec;
  if (!fs::exists(pin, ec)) return nullptr;
  return bpf_link__open(pin.c_str());
}

// libbpf 1.x returns NULL with errno set, or a negative error code.
int libbpfErr(long ret) {
  return ret < 0 ? static_cast<int>(-ret) : errno;
}

}  // namespace

std::string_view reasonName(int reason) {
  return bpfpins::reasonName(reason);
}

Result<std::unique_ptr<CapturePrograms>> CapturePrograms::install(const CaptureOptions& options) {
  libbpf_set_print(libbpfPrint);
  std::unique_ptr<CapturePrograms> self(new CapturePrograms());
  self->options_ = options;
  self->maps_dir_ = options.bpffs_dir + "/maps";
  self->links_dir_ = options.bpffs_dir + "/links";
  self->sk_lookup_dir_ = self->links_dir_ + "/sk_lookup";
  self->ncpus_ = libbpf_num_possible_cpus();
  if (self->ncpus_ <= 0) return Error{-self->ncpus_, "cannot count possible CPUs"};

  auto mounted = ensureBpffsDir(options.bpffs_dir);
  if (!mounted) return mounted.error();
  self->mounted_bpffs_ = *mounted;
  for (const auto& dir : {self->maps_dir_, self->links_dir_, self->sk_lookup_dir_}) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Error{ec.value(), "create " + dir + ": " + ec.message()};
  }
  self->report_.maps_reused = fs::exists(self->maps_dir_ + "/nm_pods");

  int cg = ::open(options.cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) return Error::fromErrno("open cgroup " + options.cgroup_path);
  self->cgroup_fd_.reset(cg);

  if (auto st = self->load(/*retry_fresh=*/true); !st) return st.error();
  if (auto st = self->attachCgroupPrograms(); !st) return st.error();
  return self;
}

Status CapturePrograms::load(bool retry_fresh) {
  bpf_object_open_opts opts{};
  opts.sz = sizeof(opts);
  opts.pin_root_path = maps_dir_.c_str();

  cgroup_skel_ = cgroup_sock_bpf__open_opts(&opts);
  if (!cgroup_skel_) return Error::fromErrno("open cgroup_sock BPF object");
  cgroup_skel_->rodata->nm_cfg.outbound_mark = options_.outbound_mark;
  cgroup_skel_->rodata->nm_cfg.delivery_mark = options_.delivery_mark;
  int err = cgroup_sock_bpf__load(cgroup_skel_);
  if (err == 0) {
    sk_lookup_skel_ = sk_lookup_bpf__open_opts(&opts);
    if (!sk_lookup_skel_) return Error::fromErrno("open sk_lookup BPF object");
    sk_lookup_skel_->rodata->nm_cfg.outbound_mark = options_.outbound_mark;
    sk_lookup_skel_->rodata->nm_cfg.delivery_mark = options_.delivery_mark;
    err = sk_lookup_bpf__load(sk_lookup_skel_);
  }
  if (err == 0) return okStatus();

  closeAll();
  if (retry_fresh && report_.maps_reused) {
    // The pinned maps of an earlier run do not match these programs (an upgrade changed a
    // map definition). Their state is rebuilt by the next reconcile, so start afresh.
    spdlog::warn(
        "pinned maps in {} are incompatible with this agent's programs ({}); "
        "recreating them",
        maps_dir_, std::strerror(libbpfErr(err)));
    if (auto st = removePinTree(maps_dir_); !st) return st;
    std::error_code ec;
    fs::create_directories(maps_dir_, ec);
    report_.maps_reused = false;
    return load(/*retry_fresh=*/false);
  }
  return Error{libbpfErr(err), std::string("load capture programs: ") +
                                   std::strerror(libbpfErr(err)) +
                                   " (the verifier log above says why)"};
}

Status CapturePrograms::attachCgroupPrograms() {
  struct Entry {
    const char* name;
    bpf_program* prog;
  };
  const Entry entries[] = {
      {"cgroup_connect4", cgroup_skel_->progs.nm_connect4},
      {"cgroup_connect6", cgroup_skel_->progs.nm_connect6},
      {"cgroup_getpeername4", cgroup_skel_->progs.nm_getpeername4},
      {"cgroup_getpeername6", cgroup_skel_->progs.nm_getpeername6},
      {"cgroup_sockops", cgroup_skel_->progs.nm_sockops},
  };
  for (const auto& e : entries) {
    std::string pin = links_dir_ + "/" + e.name;
    if (bpf_link* link = openPinnedLink(pin)) {
      // A link pinned by an earlier run: swap in this run's program atomically, never attach
      // a second copy.
      int err = bpf_link__update_program(link, e.prog);
      if (err == 0) {
        cgroup_links_.push_back(link);
        ++report_.links_reused;
        continue;
      }
      spdlog::warn("pinned link {} cannot be updated ({}); replacing it", pin,
                   std::strerror(libbpfErr(err)));
      bpf_link__unpin(link);
      bpf_link__destroy(link);
    }
    bpf_link* link = bpf_program__attach_cgroup(e.prog, cgroup_fd_.get());
    if (!link) {
      return Error::fromErrno(std::string("attach ") + e.name + " to " + options_.cgroup_path);
    }
    cgroup_links_.push_back(link);
    if (int err = bpf_link__pin(link, pin.c_str()); err != 0) {
      return Error{libbpfErr(err), "pin " + pin + ": " + std::strerror(libbpfErr(err))};
    }
    ++report_.links_created;
  }
  return okStatus();
}

Status CapturePrograms::setExclusions(const Exclusions& exclusions) {
  int ports_fd = bpf_map__fd(cgroup_skel_->maps.nm_excl_ports);
  int cidrs_fd = bpf_map__fd(cgroup_skel_->maps.nm_excl_cidrs);
  // Clear what an earlier run (or an earlier call) left, then write the new set.
  for (int fd : {ports_fd, cidrs_fd}) {
    std::vector<uint8_t> key(fd == ports_fd ? sizeof(uint16_t) : sizeof(nm_lpm_key));
    while (bpf_map_get_next_key(fd, nullptr, key.data()) == 0) {
      if (bpf_map_delete_elem(fd, key.data()) != 0) break;
    }
  }
  std::map<uint16_t, uint8_t> ports;
  for (uint16_t p : exclusions.outbound_ports) ports[p] |= NM_EXCLUDE_OUTBOUND;
  for (uint16_t p : exclusions.inbound_ports) ports[p] |= NM_EXCLUDE_INBOUND;
  for (auto [port, bits] : ports) {
    if (bpf_map_update_elem(ports_fd, &port, &bits, BPF_ANY) != 0) {
      return Error::fromErrno("exclude port " + std::to_string(port));
    }
  }
  for (const Cidr& cidr : exclusions.cidrs) {
    nm_lpm_key key{};
    key.prefixlen = static_cast<uint32_t>(cidr.prefixLen());
    std::memcpy(key.addr, cidr.base().bytes().data(), 16);
    nm_excl_cidr value{};
    value.dirs = NM_EXCLUDE_OUTBOUND | NM_EXCLUDE_INBOUND;
    value.prefixlen = static_cast<uint16_t>(key.prefixlen);
    if (bpf_map_update_elem(cidrs_fd, &key, &value, BPF_ANY) != 0) {
      return Error::fromErrno("exclude CIDR " + cidr.toString());
    }
  }
  return okStatus();
}

Status CapturePrograms::enrollPod(uint64_t netns_cookie, int netns_fd,
                                  const std::vector<IpAddress>& ips,
                                  const CaptureListenerFds& listeners) {
  // Counters first (kept across restarts: BPF_NOEXIST), so every later step is counted.
  std::vector<nm_counters> zero(ncpus_);
  std::memset(zero.data(), 0, zero.size() * sizeof(nm_counters));
  if (bpf_map_update_elem(bpf_map__fd(cgroup_skel_->maps.nm_pod_stats), &netns_cookie, zero.data(),
                          BPF_NOEXIST) != 0 &&
      errno != EEXIST) {
    return Error::fromErrno("create pod counters");
  }

  int listeners_fd = bpf_map__fd(cgroup_skel_->maps.nm_listeners);
  struct Listener {
    int fd;
    uint16_t kind;
    uint16_t family;
  };
  const Listener entries[] = {
      {listeners.inbound_v4, NM_LISTENER_INBOUND, 4},
      {listeners.inbound_v6, NM_LISTENER_INBOUND, 6},
      {listeners.hbone_v4, NM_LISTENER_HBONE, 4},
      {listeners.hbone_v6, NM_LISTENER_HBONE, 6},
  };
  for (const auto& l : entries) {
    nm_listener_key key{};
    key.netns_cookie = netns_cookie;
    key.kind = l.kind;
    key.family = l.family;
    if (l.fd < 0) {
      bpf_map_delete_elem(listeners_fd, &key);
      continue;
    }
    uint64_t sock = static_cast<uint64_t>(l.fd);
    if (bpf_map_update_elem(listeners_fd, &key, &sock, BPF_ANY) != 0) {
      return Error::fromErrno("register listener in sockhash");
    }
  }

  int addrs_fd = bpf_map__fd(cgroup_skel_->maps.nm_pod_addrs);
  for (const IpAddress& ip : ips) {
    nm_ip key = toNmIp(ip);
    if (bpf_map_update_elem(addrs_fd, &key, &netns_cookie, BPF_ANY) != 0) {
      return Error::fromErrno("register pod address " + ip.toString());
    }
  }

  if (auto st = attachSkLookup(netns_cookie, netns_fd); !st) return st;

  nm_pod_info info{};
  if (listeners.outbound_v4 >= 0) info.flags |= NM_POD_OUTBOUND_V4;
  if (listeners.outbound_v6 >= 0) info.flags |= NM_POD_OUTBOUND_V6;
  if (bpf_map_update_elem(bpf_map__fd(cgroup_skel_->maps.nm_pods), &netns_cookie, &info, BPF_ANY) !=
      0) {
    return Error::fromErrno("enroll pod");
  }
  return okStatus();
}

Status CapturePrograms::attachSkLookup(uint64_t netns_cookie, int netns_fd) {
  if (sk_lookup_links_.count(netns_cookie)) return okStatus();
  std::string pin = sk_lookup_dir_ + "/" + std::to_string(netns_cookie);
  bpf_program* prog = sk_lookup_skel_->progs.nm_sk_lookup;
  if (bpf_link* link = openPinnedLink(pin)) {
    if (bpf_link__update_program(link, prog) == 0) {
      sk_lookup_links_[netns_cookie] = link;
      return okStatus();
    }
    bpf_link__unpin(link);
    bpf_link__destroy(link);
  }
  bpf_link* link = bpf_program__attach_netns(prog, netns_fd);
  if (!link) return Error::fromErrno("attach sk_lookup to pod netns");
  sk_lookup_links_[netns_cookie] = link;
  if (int err = bpf_link__pin(link, pin.c_str()); err != 0) {
    return Error{libbpfErr(err), "pin " + pin + ": " + std::strerror(libbpfErr(err))};
  }
  return okStatus();
}

Status CapturePrograms::detachSkLookup(uint64_t netns_cookie) {
  std::string pin = sk_lookup_dir_ + "/" + std::to_string(netns_cookie);
  auto it = sk_lookup_links_.find(netns_cookie);
  bpf_link* link = it != sk_lookup_links_.end() ? it->second : openPinnedLink(pin);
  if (it != sk_lookup_links_.end()) sk_lookup_links_.erase(it);
  ::unlink(pin.c_str());
  if (link) {
    // BPF_LINK_DETACH (5.9) stops steering now even if another fd still holds the link.
    bpf_link__detach(link);
    bpf_link__destroy(link);
  }
  return okStatus();
}

Status CapturePrograms::unenrollPod(uint64_t netns_cookie, const std::vector<IpAddress>& ips) {
  bpf_map_delete_elem(bpf_map__fd(cgroup_skel_->maps.nm_pods), &netns_cookie);
  (void)detachSkLookup(netns_cookie);
  int addrs_fd = bpf_map__fd(cgroup_skel_->maps.nm_pod_addrs);
  for (const IpAddress& ip : ips) {
    nm_ip key = toNmIp(ip);
    uint64_t owner = 0;
    if (bpf_map_lookup_elem(addrs_fd, &key, &owner) == 0 && owner == netns_cookie) {
      bpf_map_delete_elem(addrs_fd, &key);
    }
  }
  int listeners_fd = bpf_map__fd(cgroup_skel_->maps.nm_listeners);
  for (uint16_t kind : {NM_LISTENER_INBOUND, NM_LISTENER_HBONE}) {
    for (uint16_t family : {4, 6}) {
      nm_listener_key key{};
      key.netns_cookie = netns_cookie;
      key.kind = kind;
      key.family = family;
      bpf_map_delete_elem(listeners_fd, &key);
    }
  }
  bpf_map_delete_elem(bpf_map__fd(cgroup_skel_->maps.nm_pod_stats), &netns_cookie);
  return okStatus();
}

Status CapturePrograms::forgetPodsExcept(const std::set<uint64_t>& keep) {
  auto stale_keys = [&](int fd) {
    std::vector<uint64_t> stale;
    uint64_t key = 0;
    uint64_t* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &key) == 0) {
      if (!keep.count(key)) stale.push_back(key);
      prev = &key;
    }
    return stale;
  };
  for (uint64_t cookie : stale_keys(bpf_map__fd(cgroup_skel_->maps.nm_pods))) {
    spdlog::info("forgetting pod netns cookie {} enrolled by an earlier run", cookie);
    bpf_map_delete_elem(bpf_map__fd(cgroup_skel_->maps.nm_pods), &cookie);
  }
  for (uint64_t cookie : stale_keys(bpf_map__fd(cgroup_skel_->maps.nm_pod_stats))) {
    bpf_map_delete_elem(bpf_map__fd(cgroup_skel_->maps.nm_pod_stats), &cookie);
  }
  // Addresses owned by a forgotten pod.
  int addrs_fd = bpf_map__fd(cgroup_skel_->maps.nm_pod_addrs);
  std::vector<nm_ip> stale_addrs;
  nm_ip key{};
  nm_ip* prev = nullptr;
  while (bpf_map_get_next_key(addrs_fd, prev, &key) == 0) {
    uint64_t owner = 0;
    if (bpf_map_lookup_elem(addrs_fd, &key, &owner) == 0 && !keep.count(owner)) {
      stale_addrs.push_back(key);
    }
    prev = &key;
  }
  for (auto& a : stale_addrs) bpf_map_delete_elem(addrs_fd, &a);
  // sk_lookup links pinned for namespaces no longer enrolled.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(sk_lookup_dir_, ec)) {
    uint64_t cookie = std::strtoull(entry.path().filename().c_str(), nullptr, 10);
    if (!keep.count(cookie)) (void)detachSkLookup(cookie);
  }
  return okStatus();
}

std::optional<SocketAddress> CapturePrograms::takeOrigDst(uint64_t netns_cookie,
                                                          const SocketAddress& app) {
  nm_orig_dst_key key{};
  key.netns_cookie = netns_cookie;
  std::memcpy(key.addr, app.ip.bytes().data(), 16);
  key.port = app.port;
  nm_orig_dst value{};
  int fd = bpf_map__fd(cgroup_skel_->maps.nm_orig_dst);
  if (bpf_map_lookup_elem(fd, &key, &value) != 0) return std::nullopt;
  bpf_map_delete_elem(fd, &key);
  std::array<uint8_t, 16> bytes{};
  std::memcpy(bytes.data(), value.addr, 16);
  return SocketAddress{IpAddress::fromBytes(bytes), value.port};
}

namespace {

Result<Counters> sumPerCpu(int fd, const void* key, int ncpus) {
  std::vector<nm_counters> values(ncpus);
  if (bpf_map_lookup_elem(fd, key, values.data()) != 0) {
    return Error::fromErrno("read counters");
  }
  Counters sum{};
  for (const auto& v : values) {
    for (int i = 0; i < NM_REASON_MAX; ++i) sum[i] += v.count[i];
  }
  return sum;
}

}  // namespace

Result<Counters> CapturePrograms::nodeCounters() const {
  uint32_t zero = 0;
  return sumPerCpu(bpf_map__fd(cgroup_skel_->maps.nm_node_stats), &zero, ncpus_);
}

Status CapturePrograms::uninstall() {
  std::vector<uint64_t> cookies;
  for (const auto& [cookie, link] : sk_lookup_links_) cookies.push_back(cookie);
  for (uint64_t cookie : cookies) (void)detachSkLookup(cookie);
  for (bpf_link* link : cgroup_links_) {
    bpf_link__unpin(link);
    bpf_link__detach(link);
    bpf_link__destroy(link);
  }
  cgroup_links_.clear();
  closeAll();
  if (mounted_bpffs_ && ::umount2(options_.bpffs_dir.c_str(), MNT_DETACH) != 0) {
    spdlog::warn("unmount {}: {}", options_.bpffs_dir, std::strerror(errno));
  }
  // Remaining pins (maps, stale sk_lookup links of gone pods) and the directories.
  auto st = removePinTree(options_.bpffs_dir);
  mounted_bpffs_ = false;
  return st;
}

void CapturePrograms::closeAll() {
  for (auto& [cookie, link] : sk_lookup_links_) bpf_link__destroy(link);
  sk_lookup_links_.clear();
  for (bpf_link* link : cgroup_links_) bpf_link__destroy(link);
  cgroup_links_.clear();
  if (sk_lookup_skel_) sk_lookup_bpf__destroy(sk_lookup_skel_);
  if (cgroup_skel_) cgroup_sock_bpf__destroy(cgroup_skel_);
  sk_lookup_skel_ = nullptr;
  cgroup_skel_ = nullptr;
}

CapturePrograms::~CapturePrograms() {
  closeAll();
}

}  // namespace nodemesh::agent
