#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/pod_discovery.h"
#include "agent/pod_source.h"
#include "agent/steady_clock.h"

namespace nodemesh::agent {

struct NetnsPodSourceOptions {
  std::string netns_dir = "/var/run/netns";
  // Only named namespaces whose name starts with this (and no process that uses another named
  // one): several simulated clusters on one machine, or a runtime's own prefix ("cni-").
  std::string name_prefix;
  std::string proc_dir = "/proc";
  // How often namespaces used only by processes (/proc/*/ns/net) are looked for while the agent
  // is not searching. Named namespaces are looked at on every list(); so are processes on the
  // first list(), while searching, or when a named namespace disappeared (it may live on in a
  // process).
  std::chrono::milliseconds process_scan_interval{2000};
};

// PodSource over the namespaces visible on the node: named ones under netns_dir (watched with
// inotify, so changed() is cheap) and those of processes under proc_dir. No pod metadata:
// the agent matches the addresses on a namespace's interfaces against the workloads.
class NetnsPodSource final : public PodSource {
 public:
  NetnsPodSource(NetnsPodSourceOptions options, const SteadyClock& clock);

  bool changed() override { return watch_.changed(); }
  std::vector<PodNetns> list(bool searching) override;
  Result<OpenedNetns> open(const PodNetns& netns) override;
  Result<std::vector<IpAddress>> addresses(const PodNetns& netns, int netns_fd) override;

  // Named namespaces are watched (after a changed() call): for the discovery log line.
  bool watching() const { return watch_.active(); }

 private:
  const NetnsPodSourceOptions options_;
  const SteadyClock& clock_;
  NetnsDirWatch watch_;
  std::map<uint64_t, NetnsCandidate> known_;  // the last list(), by inode
  bool listed_once_ = false;
  SteadyClock::TimePoint last_process_scan_{};
};

}  // namespace nodemesh::agent
