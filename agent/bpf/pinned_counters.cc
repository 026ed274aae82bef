#include "agent/bpf/pinned_counters.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <vector>

#include "agent/bpf/capture_programs.h"
#include "capture_abi.h"
#include "common/fd.h"

namespace nodemesh::agent {

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

}  // namespace nodemesh::agent
