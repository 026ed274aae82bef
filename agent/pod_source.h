#pragma once

// How the agent learns which pods (network namespaces) exist on the node: the seam beside
// config::ConfigSource (which says which workloads should be there). The netns scan
// (netns_pod_source.h) is the first implementation; the CNI plugin's socket and a Kubernetes
// watch are the next.

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::agent {

// A network namespace on the node that may be a pod's.
struct PodNetns {
  uint64_t id = 0;   // stable while the namespace exists (the netns scan: its nsfs inode)
  std::string path;  // how it is reached, for logs and the admin API
};

// A namespace the agent holds open while it is listed.
struct OpenedNetns {
  UniqueFd fd;
  uint64_t cookie = 0;  // SO_NETNS_COOKIE: the key of the capture maps
};

// Not thread-safe: the agent's loop is its only caller.
class PodSource {
 public:
  virtual ~PodSource() = default;

  // True when pods may have come or gone since the last call, and whenever the source cannot
  // tell (the caller must then list to find out). Never blocks.
  virtual bool changed() = 0;
  // Every namespace that may hold a pod, now. `searching`: a wanted workload has no pod yet,
  // so look everywhere, including where looking is expensive.
  virtual std::vector<PodNetns> list(bool searching) = 0;
  // Opens a namespace list() returned; fails when it went away meanwhile.
  virtual Result<OpenedNetns> open(const PodNetns& netns) = 0;
  // The pod's addresses. They may appear after the namespace (the CNI plugin adds them
  // later), so the agent asks again on each pass until one matches a workload.
  virtual Result<std::vector<IpAddress>> addresses(const PodNetns& netns, int netns_fd) = 0;
};

}  // namespace nodemesh::agent
