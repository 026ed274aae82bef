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

#include "agent/bpf/capture_programs.h"
#include "common/fd.h"
#include "common/ip_address.h"
#include "model/snapshot.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent {

struct AgentOptions {
  std::string node;  // this node's name, as workloads' `node` field spells it
  std::string netns_dir = "/var/run/netns";
  std::string proc_dir = "/proc";
  // How often namespaces used only by processes (/proc/*/ns/net) are looked for while every
  // wanted workload is enrolled. Named namespaces are looked at on every pass; so are processes
  // while a workload still waits for its pod, or when a named namespace disappeared (it may
  // live on in a process). While every wanted workload is enrolled and named namespaces are
  // watched (NetnsDirWatch), this is also how often a pass runs at all (see scanDue()).
  std::chrono::milliseconds process_scan_interval{2000};
};

struct EnrolledPod {
  uint64_t netns_cookie = 0;
  std::string netns_path;
  std::string workload_uid;
  std::string name;  // "namespace/name"
  std::vector<IpAddress> ips;
};

// Follows the node's pods: finds the network namespace of every HBONE workload scheduled on
// this node (by matching its addresses against the interfaces of the namespaces it can see),
// enrolls it (tunnel listeners, then capture), and unenrolls pods that disappear or leave the
// config. reconcile() is one pass; the caller runs it periodically and after config changes.
class Agent {
 public:
  Agent(AgentOptions options, CapturePrograms& capture, tunnel::Tunnel& tunnel);

  // Thread-safe: the config source calls it from its own thread.
  void setSnapshot(model::SnapshotPtr snapshot);
  // Whether a pass is needed now: before the first one, after a config change, while a wanted
  // workload has no pod yet (its namespace or addresses may appear at any time), when
  // `netns_changed` (a named namespace came or went, or nobody watches them), and otherwise
  // once every process_scan_interval.
  bool scanDue(std::chrono::steady_clock::time_point now, bool netns_changed) const;
  void reconcile();
  // Passes run since the start.
  uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }
  // Unenrolls every pod (before the programs are uninstalled).
  void unenrollAll();

  std::vector<EnrolledPod> enrolledPods() const;

 private:
  struct Netns {
    UniqueFd fd;
    std::string path;
    uint64_t cookie = 0;
    std::vector<IpAddress> addresses;
    bool warned = false;           // enrollment failure already logged
    bool warned_conflict = false;  // "addresses of two workloads" already logged
    bool named = false;            // found under netns_dir
  };

  void enroll(uint64_t inode, Netns& ns, const model::Workload& workload,
              const std::vector<IpAddress>& ips);
  void unenroll(uint64_t inode);

  AgentOptions options_;
  CapturePrograms& capture_;
  tunnel::Tunnel& tunnel_;

  mutable std::mutex snapshot_mu_;
  model::SnapshotPtr snapshot_;

  std::map<uint64_t, Netns> netns_;  // by nsfs inode
  mutable std::mutex enrolled_mu_;
  std::map<uint64_t, EnrolledPod> enrolled_;  // by nsfs inode
  bool reconciled_once_ = false;
  bool pending_ = false;  // the last pass left a wanted workload without a pod
  std::atomic<bool> snapshot_changed_{false};
  std::atomic<uint64_t> passes_{0};
  std::chrono::steady_clock::time_point last_pass_{};
  std::chrono::steady_clock::time_point last_process_scan_{};
};

}  // namespace nodemesh::agent
