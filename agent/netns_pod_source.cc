#include "agent/netns_pod_source.h"

#include <set>

#include <spdlog/spdlog.h>

#include "common/netns.h"

namespace nodemesh::agent {

NetnsPodSource::NetnsPodSource(NetnsPodSourceOptions options, const SteadyClock& clock)
    : options_(std::move(options)),
      clock_(clock),
      watch_(options_.netns_dir, options_.name_prefix) {}

std::vector<PodNetns> NetnsPodSource::list(bool searching) {
  // The process pass reads a link per process on the machine (hundreds of microseconds on
  // a node; run every 200 ms it showed up in the tunnel's p99.9 latency), so it runs every
  // process_scan_interval, and at once while a workload waits for its pod.
  const auto now = clock_.now();
  bool scan_processes =
      searching || !listed_once_ || now - last_process_scan_ >= options_.process_scan_interval;
  auto candidates =
      listNetns(options_.netns_dir, options_.proc_dir, scan_processes, options_.name_prefix);
  if (!scan_processes) {
    // A name that disappeared may leave a namespace some process still uses: look before
    // reporting it gone.
    std::set<uint64_t> named;
    for (const auto& c : candidates) named.insert(c.inode);
    for (const auto& [inode, c] : known_) {
      scan_processes = scan_processes || (c.named && !named.count(inode));
    }
    if (scan_processes)
      candidates = listNetns(options_.netns_dir, options_.proc_dir, true, options_.name_prefix);
  }
  if (scan_processes) {
    last_process_scan_ = now;
  } else {
    // Without the process pass, namespaces found through a process were not looked for:
    // they are still there as far as anyone knows.
    std::set<uint64_t> listed;
    for (const auto& c : candidates) listed.insert(c.inode);
    for (const auto& [inode, c] : known_) {
      if (!c.named && !listed.count(inode)) candidates.push_back(c);
    }
  }
  listed_once_ = true;

  known_.clear();
  std::vector<PodNetns> out;
  for (const auto& c : candidates) {
    known_.emplace(c.inode, c);
    out.push_back({c.inode, c.path});
  }
  return out;
}

Result<OpenedNetns> NetnsPodSource::open(const PodNetns& netns) {
  auto fd = openNetns(netns.path);
  if (!fd) return fd.error();  // raced with its removal
  auto cookie = netnsCookie(fd->get());
  if (!cookie) {
    spdlog::warn("netns {}: {}", netns.path, cookie.error().message);
    return cookie.error();
  }
  return OpenedNetns{std::move(*fd), *cookie};
}

Result<std::vector<IpAddress>> NetnsPodSource::addresses(const PodNetns& /*netns*/, int netns_fd) {
  return netnsAddresses(netns_fd);
}

}  // namespace nodemesh::agent
