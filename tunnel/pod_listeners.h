#pragma once

// The enrolled pods of one worker and their listening sockets (15001, 15006, 15008, created in
// each pod's network namespace). Pods are made on the caller's thread (createPod) and handed to
// the worker's thread (add); accepted connections go to the PodHandler. A removed pod stops
// accepting at once, and its listeners close once their accepts have completed.

#include <linux/time_types.h>

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "common/result.h"
#include "identity/spiffe_id.h"
#include "io/ring.h"
#include "tunnel/connection_limits.h"
#include "tunnel/tunnel.h"

namespace nodemesh::hbone {
class TlsProvider;
}  // namespace nodemesh::hbone

namespace nodemesh::tunnel {

struct Pod;
class PodListeners;

struct Listener final : io::CompletionHandler {
  enum Op : uint8_t { kAccept, kBackoff };
  void onCompletion(uint8_t op, int res, unsigned flags) override;

  PodListeners* owner = nullptr;
  io::OpTag accept_tag{this, kAccept};
  io::OpTag backoff_tag{this, kBackoff};
  __kernel_timespec backoff{0, 100 * 1000 * 1000};  // after EMFILE/ENFILE/ENOMEM
  UniqueFd fd;
  Pod* pod = nullptr;
  ListenerKind kind = ListenerKind::kOutbound;
  bool in_flight = false;
  bool closing = false;
  bool stopped = false;  // drained: not re-armed, but what it still accepts is served
};

struct Pod {
  uint64_t cookie = 0;
  std::string name;
  UniqueFd netns;
  std::vector<IpAddress> ips;
  std::optional<identity::SpiffeId> identity;
  std::vector<std::unique_ptr<Listener>> listeners;
  // IPv6 delivery routing is installed: IPv6 clients are delivered from their own address.
  bool ipv6_delivery = false;
  // The workload's inbound caps, shared with the pod on the other workers; null: none.
  std::shared_ptr<WorkloadLimiter> limiter;
};

// On the caller's thread: the pod's listeners, created inside its network namespace, and the
// delivery routing there (inpod_routing.h). With `outbound` false the pod gets no 15001
// listener (another worker owns it). Without `tls` the pod keeps no identity (plain TCP only).
// `inherited` (null: none): sockets of this pod handed over by the previous agent, taken
// instead of new ones (every one given is used; a kind with none given is made anew, or left to
// the other workers when the inherited group does not admit another member).
Result<std::unique_ptr<Pod>> createPod(const PodSpec& spec, bool outbound,
                                       const TunnelOptions& options, hbone::TlsProvider* tls,
                                       PodListenerFds* fds,
                                       std::vector<InheritedListener>* inherited = nullptr);

class PodHandler {
 public:
  virtual void onAccepted(Listener& listener, UniqueFd fd) = 0;
  // The pod is being retired: nothing may keep a pointer to it past its listeners.
  virtual void onRetiring(Pod& pod) = 0;

 public:
  virtual ~PodHandler() = default;
};

class PodListeners {
 public:
  PodListeners(io::Ring& ring, const TunnelOptions& options, PodHandler& handler)
      : ring_(ring), options_(options), handler_(handler) {}
  ~PodListeners() = default;
  PodListeners(const PodListeners&) = delete;
  PodListeners& operator=(const PodListeners&) = delete;

  // Starts accepting on the pod's listeners; a pod with the same cookie is retired first.
  void add(std::unique_ptr<Pod> pod);
  // Stops accepting for the pod and removes its delivery routing (after telling the handler).
  // The pod lives on, retired, until its listeners' accepts have completed.
  void retire(uint64_t cookie);
  void retireAll();
  // Upgrades: stops accepting on every pod, keeps the pods (their HBONE server connections
  // still serve streams) and leaves the delivery routing in place from now on, retireAll()
  // included: the next agent uses it.
  void drain();
  // After drain(): no stopped listener has an accept pending (the cancelled ones completed).
  bool acceptsStopped() const;
  // Cancels every serving listener's accept; each is armed again when its cancellation
  // completes, and a new accept first takes what is already queued (agent/handoff.h explains
  // why an upgrade needs it).
  void restartAccepts();
  Pod* find(uint64_t cookie);
  // The enrolled (not retired) pod with this address, or null.
  Pod* findByIp(const IpAddress& ip);
  // No pod, and no retired pod still waiting for its accepts.
  bool empty() const { return pods_.empty() && retired_.empty(); }

 private:
  friend struct Listener;
  void arm(Listener* l);
  void onAccept(Listener* l, int res, unsigned flags);
  void onBackoff(Listener* l);
  void reap();

  io::Ring& ring_;
  const TunnelOptions& options_;
  PodHandler& handler_;
  std::unordered_map<uint64_t, std::unique_ptr<Pod>> pods_;
  std::list<std::unique_ptr<Pod>> retired_;
  bool keep_routing_ = false;
};

}  // namespace nodemesh::tunnel
