#pragma once

// Reading what a nodemesh agent pinned under its bpffs directory, without the agent: the
// capture counters, the enrolled pods' entries, and the links, programs and maps themselves.
// Used by the agent (SIGUSR1, metrics), by nodemeshctl (`bpf`, `pods`, which must work while
// the agent is down) and by tests. The pin layout is the agent's (docs/agent.md):
//   <bpffs>/maps/nm_*            the maps
//   <bpffs>/links/<name>         the cgroup links
//   <bpffs>/links/sk_lookup/<netns cookie>   one sk_lookup link per enrolled pod
// Separate from nodemesh_common (library nodemesh_bpf_pins) because it needs libbpf.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nodemesh::bpfpins {

// Snake-case name of a capture reason (enum nm_reason in capture_abi.h): "out_captured", ...;
// "unknown" out of range.
std::string_view reasonName(int reason);
int reasonCount();

// The capture counters, summed over CPUs, by reason name. Node-wide without a cookie, else the
// pod's. Zero counters are included.
Result<std::map<std::string, uint64_t>> readPinnedCounters(
    const std::string& maps_dir, std::optional<uint64_t> pod_netns_cookie = std::nullopt);

// Netns cookies of the pods in the pinned nm_pods map (enrolled pods), sorted.
Result<std::vector<uint64_t>> readEnrolledCookies(const std::string& maps_dir);

struct PinnedLink {
  std::string pin;  // path
  uint32_t id = 0;
  std::string type;         // "cgroup", "netns"
  std::string attach_type;  // "cgroup_inet4_connect", "sk_lookup"
  uint64_t target = 0;      // cgroup id, or netns inode
  uint32_t prog_id = 0;
  std::string prog_name;
  std::string prog_type;   // "cgroup_sock_addr", "sk_lookup", ...
  uint64_t run_count = 0;  // 0 unless kernel.bpf_stats_enabled
  uint64_t run_time_ns = 0;
};

struct PinnedMap {
  std::string pin;
  uint32_t id = 0;
  std::string name;
  std::string type;  // "hash", "percpu_array", "sockhash", ...
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t max_entries = 0;
  // Entries present, counted by walking the keys; nullopt for arrays and socket maps (which
  // cannot be walked from user space or always hold max_entries).
  std::optional<uint32_t> entries;
};

struct PinInventory {
  std::vector<PinnedLink> links;
  std::vector<PinnedMap> maps;
  std::vector<std::string> problems;  // pins that could not be read, with the reason
};

// Everything pinned under `bpffs_dir`. Fails only when the directory cannot be read at all.
Result<PinInventory> inspectPins(const std::string& bpffs_dir);

}  // namespace nodemesh::bpfpins
