#pragma once

// What the tunnel's connection types (TcpConnection, StreamBridge) share within one worker:
// the ring and its receive buffers, the counters, and the two parties they report to.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/ip_address.h"
#include "io/recv_ring.h"
#include "io/ring.h"
#include "model/snapshot.h"
#include "tunnel/buffer_budget.h"
#include "tunnel/lb/endpoint_picker.h"
#include "tunnel/splice_pipes.h"
#include "tunnel/tunnel.h"
#include "tunnel/tunnel_stats.h"

namespace nodemesh::tunnel {

using Clock = std::chrono::steady_clock;

// A connection the client made to a service VIP:port: the endpoint picked for it, and what
// retries on other endpoints need. Owned by the connection carrying the current attempt;
// handed to the next attempt after a connect failure.
struct ServiceTarget {
  model::SnapshotPtr snapshot;  // keeps `service` and picked workloads alive
  const model::Service* service = nullptr;
  SocketAddress vip;               // what the client connected to
  uint64_t pod_cookie = 0;         // the client pod (its netns for the next attempt)
  std::vector<std::string> tried;  // workload uids tried so far
  lb::EndpointId endpoint;         // the current attempt's endpoint
  std::string endpoint_name;       // "namespace/name", for logs
  Clock::time_point attempt_start;
  bool outcome_reported = false;  // connectSucceeded / connectFailed told to the picker
  bool established = false;       // succeeded: connectionClosed owed at the end
};

// The load balancer's side of a service connection's attempts (ServiceDialer).
class ServiceAttempts {
 public:
  // The attempt failed before anything was relayed. Returns true when a new attempt took the
  // application's socket over (`app` is then moved from); false when the caller must fail the
  // connection.
  virtual bool retry(std::unique_ptr<ServiceTarget>& target, UniqueFd& app,
                     const SocketAddress& app_addr, const std::string& why) = 0;
  virtual void established(ServiceTarget& target) = 0;
  virtual void ended(ServiceTarget& target) = 0;

 public:
  virtual ~ServiceAttempts() = default;
};

// Where connections report their life: metrics and the access log.
class ConnectionEvents {
 public:
  // The connection's addresses are known (metrics count it as opened).
  virtual void opened(const ConnectionRecord& record) = 0;
  // It finished; the record is final (the access log).
  virtual void finished(const ConnectionRecord& record) = 0;

 public:
  virtual ~ConnectionEvents() = default;
};

struct RelayContext {
  io::Ring& ring;
  io::Receivers& receivers;
  io::ReceiveBuffers& buffers;  // for application-facing sockets
  TunnelCounters& counters;
  ConnectionEvents& events;
  ServiceAttempts& services;
  BufferBudget& budget;                       // shared by the workers
  std::chrono::milliseconds connect_timeout;  // the ring's, for messages
  // Set: the plain TCP relay splices (TunnelOptions::splice) through these pipes.
  SplicePipes* pipes = nullptr;
};

// What a connection's access log record already says about it, for /connections.
ConnectionInfo describeRecord(const ConnectionRecord& r, std::chrono::milliseconds age);

// The words for a failed connect's result ("timed out after 10000 ms" for the ring's connect
// timeout, which also counts it).
std::string connectFailure(const RelayContext& ctx, int res);

}  // namespace nodemesh::tunnel
