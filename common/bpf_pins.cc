#include "common/bpf_pins.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <system_error>

#include "capture_abi.h"
#include "common/fd.h"

namespace nodemesh::bpfpins {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, NM_REASON_MAX> kReasonNames = {
    "out_captured",        "out_skip_marked",          "out_skip_loopback",
    "out_skip_excluded",   "out_no_listener",          "out_storage_failed",
    "out_established",     "out_orig_dst_failed",      "out_peername_restored",
    "delivery_registered", "delivery_register_failed", "in_steered",
    "in_hbone_steered",    "in_delivery_passed",       "in_skip_excluded",
    "in_no_listener",      "in_assign_failed",
};

std::string orUnknown(const char* s, uint32_t value) {
  return s ? std::string(s) : "type " + std::to_string(value);
}

// Counts the keys of a map that can be walked; nullopt otherwise (arrays hold max_entries
// by definition; socket-local storage cannot be walked).
std::optional<uint32_t> countEntries(int fd, const bpf_map_info& info) {
  switch (info.type) {
    case BPF_MAP_TYPE_HASH:
    case BPF_MAP_TYPE_LRU_HASH:
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_LPM_TRIE:
    case BPF_MAP_TYPE_SOCKHASH:
      break;
    default:
      return std::nullopt;
  }
  std::vector<uint8_t> key(info.key_size);
  std::vector<uint8_t> next(info.key_size);
  uint32_t n = 0;
  const void* prev = nullptr;
  // The walk is bounded by max_entries (+1 in case a concurrent update moves a key).
  while (n <= info.max_entries && bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    ++n;
    key.swap(next);
    prev = key.data();
  }
  return n;
}

void inspectLink(const std::string& pin, PinInventory& out) {
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd.valid()) {
    out.problems.push_back(Error::fromErrno("open " + pin).message);
    return;
  }
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    out.problems.push_back(Error::fromErrno("link info of " + pin).message);
    return;
  }
  PinnedLink link;
  link.pin = pin;
  link.id = info.id;
  link.type = orUnknown(libbpf_bpf_link_type_str(static_cast<bpf_link_type>(info.type)), info.type);
  link.prog_id = info.prog_id;
  if (info.type == BPF_LINK_TYPE_CGROUP) {
    link.target = info.cgroup.cgroup_id;
    link.attach_type =
        orUnknown(libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(info.cgroup.attach_type)),
                  info.cgroup.attach_type);
  } else if (info.type == BPF_LINK_TYPE_NETNS) {
    link.target = info.netns.netns_ino;
    link.attach_type =
        orUnknown(libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(info.netns.attach_type)),
                  info.netns.attach_type);
  }
  UniqueFd prog(bpf_prog_get_fd_by_id(info.prog_id));
  if (prog.valid()) {
    bpf_prog_info pinfo{};
    uint32_t plen = sizeof(pinfo);
    if (bpf_obj_get_info_by_fd(prog.get(), &pinfo, &plen) == 0) {
      link.prog_name = pinfo.name;
      link.prog_type =
          orUnknown(libbpf_bpf_prog_type_str(static_cast<bpf_prog_type>(pinfo.type)), pinfo.type);
      link.run_count = pinfo.run_cnt;
      link.run_time_ns = pinfo.run_time_ns;
    }
  }
  out.links.push_back(std::move(link));
}

void inspectMap(const std::string& pin, PinInventory& out) {
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd.valid()) {
    out.problems.push_back(Error::fromErrno("open " + pin).message);
    return;
  }
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
    out.problems.push_back(Error::fromErrno("map info of " + pin).message);
    return;
  }
  PinnedMap map;
  map.pin = pin;
  map.id = info.id;
  map.name = info.name;
  map.type = orUnknown(libbpf_bpf_map_type_str(static_cast<bpf_map_type>(info.type)), info.type);
  map.key_size = info.key_size;
  map.value_size = info.value_size;
  map.max_entries = info.max_entries;
  map.entries = countEntries(fd.get(), info);
  out.maps.push_back(std::move(map));
}

std::vector<std::string> filesUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::string_view reasonName(int reason) {
  if (reason < 0 || reason >= NM_REASON_MAX) return "unknown";
  return kReasonNames[reason];
}

int reasonCount() {
  return NM_REASON_MAX;
}

Result<std::map<std::string, uint64_t>> readPinnedCounters(const std::string& maps_dir,
                                                           std::optional<uint64_t> pod) {
  const std::string pin = maps_dir + (pod ? "/nm_pod_stats" : "/nm_node_stats");
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd.valid()) return Error::fromErrno("open pinned map " + pin);
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return Error{-ncpus, "cannot count possible CPUs"};
  std::vector<nm_counters> values(ncpus);
  uint32_t zero = 0;
  const void* key = pod ? static_cast<const void*>(&*pod) : &zero;
  if (bpf_map_lookup_elem(fd.get(), key, values.data()) != 0) {
    return Error::fromErrno("read " + pin);
  }
  std::map<std::string, uint64_t> out;
  for (int i = 0; i < NM_REASON_MAX; ++i) {
    uint64_t sum = 0;
    for (const auto& v : values) sum += v.count[i];
    out[std::string(reasonName(i))] = sum;
  }
  return out;
}

Result<std::vector<uint64_t>> readEnrolledCookies(const std::string& maps_dir) {
  const std::string pin = maps_dir + "/nm_pods";
  UniqueFd fd(bpf_obj_get(pin.c_str()));
  if (!fd.valid()) return Error::fromErrno("open pinned map " + pin);
  std::vector<uint64_t> out;
  uint64_t key = 0;
  uint64_t next = 0;
  const void* prev = nullptr;
  while (out.size() <= NM_MAX_PODS && bpf_map_get_next_key(fd.get(), prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<PinInventory> inspectPins(const std::string& bpffs_dir) {
  std::error_code ec;
  if (!fs::is_directory(bpffs_dir, ec)) {
    return Error{ENOENT, bpffs_dir +
                             ": no such directory (is the agent installed with this "
                             "--bpffs?)"};
  }
  PinInventory out;
  for (const auto& pin : filesUnder(bpffs_dir + "/links")) inspectLink(pin, out);
  for (const auto& pin : filesUnder(bpffs_dir + "/maps")) inspectMap(pin, out);
  return out;
}

}  // namespace nodemesh::bpfpins
