#pragma once

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
#include "ztunnel/tunnel.h"

namespace nodemesh::agent {

struct AgentOptions {
  std::string node;  // this node's name, as workloads' `node` field spells it
  std::string netns_dir = "/var/run/netns";
  std::string proc_dir = "/proc";
  // How often namespaces used only by processes (/proc/*/ns/net) are looked for while every
  // wanted workload is enrolled. Named namespaces are looked at on every pass; so are processes
  // while a workload still waits for its pod, or when a named namespace disappeared (it may
  // live on in a process).
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
  Agent(AgentOptions options, CapturePrograms& capture, ztunnel::Tunnel& tunnel);

  // Thread-safe: the config source calls it from its own thread.
  void setSnapshot(model::SnapshotPtr snapshot);
  void reconcile();
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
  ztunnel::Tunnel& tunnel_;

  mutable std::mutex snapshot_mu_;
  model::SnapshotPtr snapshot_;

  std::map<uint64_t, Netns> netns_;  // by nsfs inode
  mutable std::mutex enrolled_mu_;
  std::map<uint64_t, EnrolledPod> enrolled_;  // by nsfs inode
  bool reconciled_once_ = false;
  std::chrono::steady_clock::time_point last_process_scan_{};
};

}  // namespace nodemesh::agent
