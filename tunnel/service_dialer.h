#pragma once

// Service load balancing and connect failure recovery for connections to a service VIP: picks
// an endpoint for each attempt (lb::EndpointPicker: power of two choices, locality, outlier
// ejection), tells the picker how each attempt went, and retries a failed connect on an
// endpoint not tried yet, up to --connect-attempts.

#include <memory>
#include <string>

#include "common/fd.h"
#include "model/snapshot.h"
#include "tunnel/lb/endpoint_picker.h"
#include "tunnel/relay_context.h"

namespace nodemesh::tunnel {

struct Pod;
class PodListeners;

class ServiceDialer final : public ServiceAttempts {
 public:
  // How an attempt reaches what the dialer chose (Outbound).
  class Connector {
   public:
    // Plain TCP from the pod to record.dst; `target` is null for a connection that is not
    // load-balanced (a port the service does not have, or PASSTHROUGH). `count_opened`: metrics
    // count a service connection once, at its first attempt.
    virtual void relayTcp(Pod& pod, UniqueFd app, ConnectionRecord record,
                          std::unique_ptr<ServiceTarget> target, bool count_opened) = 0;
    virtual void relayHbone(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
                            const SocketAddress& dst, const model::Workload& dst_workload,
                            std::unique_ptr<ServiceTarget> target) = 0;
    // No endpoint: the application's connection is reset, with an access log line.
    virtual void refuse(Pod& pod, UniqueFd app, ConnectionRecord record, bool count_opened,
                        const std::string& why) = 0;

   public:
    virtual ~Connector() = default;
  };

  ServiceDialer(const TunnelOptions& options, TunnelCounters& counters, PodListeners& pods,
                Connector& connector);

  // Starts an attempt for the application's connection to `target`'s service.
  void start(Pod& pod, UniqueFd app, const SocketAddress& app_addr,
             std::unique_ptr<ServiceTarget> target, const std::string& last_error);

  bool retry(std::unique_ptr<ServiceTarget>& target, UniqueFd& app, const SocketAddress& app_addr,
             const std::string& why) override;
  void established(ServiceTarget& target) override;
  void ended(ServiceTarget& target) override;

  // Forgets endpoints of removed workloads.
  void prune(Clock::time_point now) { picker_.prune(now); }

 private:
  const TunnelOptions& options_;
  TunnelCounters& counters_;
  PodListeners& pods_;
  Connector& connector_;
  lb::EndpointPicker picker_;
};

}  // namespace nodemesh::tunnel
