#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/capture_control.h"
#include "agent/pod_source.h"
#include "agent/steady_clock.h"
#include "common/fd.h"
#include "common/ip_address.h"
#include "model/snapshot.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {

struct AgentOptions {
  std::string node;  // this node's name, as workloads' `node` field spells it
  // While every wanted workload is enrolled and the pod source reports no change, how often a
  // pass runs anyway (see scanDue()); the agent passes --process-scan-interval-ms.
  std::chrono::milliseconds idle_pass_interval{2000};
};

struct EnrolledPod {
  uint64_t netns_cookie = 0;
  std::string netns_path;
  std::string workload_uid;
  std::string name;  // "namespace/name"
  std::vector<IpAddress> ips;
};

// Follows the node's pods: finds the network namespace of every in-mesh workload scheduled on
// this node (model::inMesh; by matching its addresses against those of the namespaces the
// PodSource lists), enrolls it (tunnel listeners, then capture), and unenrolls pods that
// disappear or leave the config. reconcile() is one pass; the caller runs it periodically and
// after config changes. Destroying the agent unenrolls every pod.
class Agent {
 public:
  Agent(AgentOptions options, PodSource& pods, CaptureControl& capture, tunnel::Tunnel& tunnel,
        const SteadyClock& clock);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Thread-safe: the config source calls it from its own thread.
  void setSnapshot(model::SnapshotPtr snapshot);
  // Whether a pass is needed now: before the first one, after a config change, while a wanted
  // workload has no pod yet (its namespace or addresses may appear at any time), when
  // `pods_changed` (PodSource::changed()), and otherwise once every idle_pass_interval.
  bool scanDue(bool pods_changed) const;
  void reconcile();
  // Passes run since the start.
  uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }
  // Unenrolls every pod (before the programs are uninstalled).
  void unenrollAll();
  // Forgets every pod without unenrolling it: the capture stays in the maps for the next agent
  // (an upgrade), and the destructor leaves it alone.
  void leaveEnrolled();

  std::vector<EnrolledPod> enrolledPods() const;

 private:
  struct Netns {
    PodNetns source;  // as the PodSource listed it
    UniqueFd fd;
    uint64_t cookie = 0;
    std::vector<IpAddress> addresses;
    bool warned = false;           // enrollment failure already logged
    bool warned_conflict = false;  // "addresses of two workloads" already logged
    // Enrolled with fewer of its workload's addresses than the workload lists (the CNI plugin
    // was still adding them, e.g. the IPv6 one of a dual-stack pod): its addresses are read
    // again on each pass, and a new one re-enrolls the pod with all of them.
    bool missing_addresses = false;
  };

  void enroll(uint64_t key, Netns& ns, const model::Workload& workload,
              const std::vector<IpAddress>& ips);
  void unenroll(uint64_t id);

  AgentOptions options_;
  PodSource& pods_;
  CaptureControl& capture_;
  tunnel::Tunnel& tunnel_;
  const SteadyClock& clock_;

  mutable std::mutex snapshot_mu_;
  model::SnapshotPtr snapshot_;

  std::map<uint64_t, Netns> netns_;  // by PodNetns::id
  mutable std::mutex enrolled_mu_;
  std::map<uint64_t, EnrolledPod> enrolled_;  // by PodNetns::id
  bool reconciled_once_ = false;
  bool pending_ = false;  // the last pass left a wanted workload without a pod
  std::atomic<bool> snapshot_changed_{false};
  std::atomic<uint64_t> passes_{0};
  SteadyClock::TimePoint last_pass_{};
};

}  // namespace nodemesh::agent
