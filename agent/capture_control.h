#pragma once

// The seam between the agent's enrollment logic and the kernel side of capture (the BPF
// programs and their maps, agent/bpf/capture_programs.h), so that reconciliation is
// unit-tested without root.

#include <cstdint>
#include <set>
#include <vector>

#include "common/ip_address.h"
#include "common/result.h"

namespace nodemesh::agent {

// The tunnel's listening sockets in one pod, as capture needs them; -1 = absent. Outbound
// listeners are not steered to (connect4/6 rewrite to the port), only their presence counts.
struct CaptureListenerFds {
  int outbound_v4 = -1;
  int outbound_v6 = -1;
  int inbound_v4 = -1;
  int inbound_v6 = -1;
  int hbone_v4 = -1;
  int hbone_v6 = -1;
};

// Turns capture on and off per pod network namespace (identified by its netns cookie).
class CaptureControl {
 public:
  virtual ~CaptureControl() = default;

  // Steers the pod's traffic to `listeners`; on failure the caller undoes it with unenrollPod.
  virtual Status enrollPod(uint64_t netns_cookie, int netns_fd, const std::vector<IpAddress>& ips,
                           const CaptureListenerFds& listeners) = 0;
  // Reverses enrollPod. Missing entries are not an error.
  virtual Status unenrollPod(uint64_t netns_cookie, const std::vector<IpAddress>& ips) = 0;
  // Drops the capture state of every pod whose netns cookie is not in `keep` (what an earlier
  // run of the agent enrolled and is gone now).
  virtual Status forgetPodsExcept(const std::set<uint64_t>& keep) = 0;
};

}  // namespace nodemesh::agent
