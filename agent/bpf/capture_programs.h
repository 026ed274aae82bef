#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/capture_control.h"
#include "capture_abi.h"
#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"

struct bpf_link;
struct cgroup_sock_bpf;
struct sk_lookup_bpf;

namespace nodemesh::agent {

struct CaptureOptions {
  std::string bpffs_dir;    // everything this agent pins lives below it
  std::string cgroup_path;  // where the cgroup programs attach
  uint32_t outbound_mark = NM_MARK_OUTBOUND;
  uint32_t delivery_mark = NM_MARK_DELIVERY;
};

struct Exclusions {
  std::vector<uint16_t> outbound_ports;  // destination ports never captured
  std::vector<uint16_t> inbound_ports;   // local ports of a pod never steered
  std::vector<Cidr> cidrs;               // destinations (outbound) and sources (inbound)
};

using Counters = std::array<uint64_t, NM_REASON_MAX>;

// Snake-case reason names for logs, metrics and the CLI ("out_captured", ...).
std::string_view reasonName(int reason);

// How install() found the kernel state: fresh, or reusing the pins of an earlier run.
struct InstallReport {
  int links_created = 0;
  int links_reused = 0;
  bool maps_reused = false;
};

// The capture programs of one agent instance: both skeletons, their pinned maps
// (<bpffs>/maps), the cgroup links (<bpffs>/links) and one sk_lookup link per enrolled pod
// netns (<bpffs>/links/sk_lookup/<netns cookie>). Pins survive the process, so a restarted
// agent picks up the same maps and updates the same links instead of attaching twice;
// uninstall() is the only thing that removes them.
class CapturePrograms final : public CaptureControl {
 public:
  static Result<std::unique_ptr<CapturePrograms>> install(const CaptureOptions& options);
  ~CapturePrograms() override;
  CapturePrograms(const CapturePrograms&) = delete;
  CapturePrograms& operator=(const CapturePrograms&) = delete;

  const InstallReport& installReport() const { return report_; }

  Status setExclusions(const Exclusions& exclusions);

  // Enrolls a pod: counters, listener sockets, addresses, its sk_lookup link, and last the
  // pods entry that turns outbound capture on.
  Status enrollPod(uint64_t netns_cookie, int netns_fd, const std::vector<IpAddress>& ips,
                   const CaptureListenerFds& listeners) override;
  // Reverses enrollPod (outbound capture off first). Missing entries are not an error.
  Status unenrollPod(uint64_t netns_cookie, const std::vector<IpAddress>& ips) override;
  // Drops every pod entry, address, counter set and sk_lookup link whose netns cookie is not
  // in `keep`: what an earlier run enrolled and is gone now.
  Status forgetPodsExcept(const std::set<uint64_t>& keep) override;

  // The original destination of a connection accepted on a pod's 15001 listener, keyed by
  // the pod's netns cookie and the application socket's address (the accepted peer).
  // Removes the entry: each connection is looked up once.
  std::optional<SocketAddress> takeOrigDst(uint64_t netns_cookie, const SocketAddress& app);

  Result<Counters> nodeCounters() const;

  // Detaches every program and removes every pin and directory this agent created.
  Status uninstall();

 private:
  CapturePrograms() = default;
  Status load(bool retry_fresh);
  Status attachCgroupPrograms();
  Status attachSkLookup(uint64_t netns_cookie, int netns_fd);
  Status detachSkLookup(uint64_t netns_cookie);
  void closeAll();

  CaptureOptions options_;
  std::string maps_dir_;
  std::string links_dir_;
  std::string sk_lookup_dir_;
  bool mounted_bpffs_ = false;
  InstallReport report_;
  cgroup_sock_bpf* cgroup_skel_ = nullptr;
  sk_lookup_bpf* sk_lookup_skel_ = nullptr;
  UniqueFd cgroup_fd_;
  std::vector<bpf_link*> cgroup_links_;
  std::map<uint64_t, bpf_link*> sk_lookup_links_;
  int ncpus_ = 1;
};

}  // namespace nodemesh::agent
