#pragma once

// What the waypoint does with each CONNECT a node agent sends it: the destination (the
// original service VIP:port or pod IP:port in `:authority`) must name this waypoint; an
// endpoint is chosen (power of two choices on the requests in flight); the stream is joined to
// a new CONNECT to that endpoint's 15008 with `:authority` podIP:targetPort, on a pooled
// connection that presents the waypoint's own identity (so the destination sees the waypoint,
// as in Istio).

#include <list>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "model/mesh.h"
#include "model/snapshot.h"
#include "waypoint/proxy/hbone_conn.h"
#include "waypoint/proxy/stream_join.h"

namespace nodemesh::waypoint {

// Where a CONNECT to the waypoint goes: decided from the snapshot alone (also what the admin
// API's explain shows).
struct UpstreamChoice {
  const model::Service* service = nullptr;    // the destination service, if a VIP
  const model::Workload* workload = nullptr;  // the endpoint picked
  SocketAddress address;                      // the endpoint's ip:targetPort (the authority)
  int status = 200;                           // not 200: the answer to the client, and why
  std::string error;
};

// Whether the destination `dst` (a CONNECT authority) uses the waypoint workload `self_uid`.
bool servedBy(const model::Snapshot& snapshot, const SocketAddress& dst,
              const std::string& self_uid);

struct ProxyStats {
  uint64_t streams = 0;   // CONNECT requests
  uint64_t refused = 0;   // answered with something other than 200 by the waypoint itself
  uint64_t active = 0;    // joins open now
  uint64_t bytes_in = 0;  // client to upstream, of finished joins
  uint64_t bytes_out = 0;
};

class Proxy final : public ConnectAcceptor {
 public:
  explicit Proxy(std::string self_uid) : self_uid_(std::move(self_uid)) {}
  ~Proxy() override = default;
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void setConnections(HboneConns* conns) { conns_ = conns; }
  void setSnapshot(model::SnapshotPtr snapshot) { snapshot_ = std::move(snapshot); }

  void onConnectRequest(HboneConn& conn, hbone::StreamId stream,
                        const hbone::ConnectRequest& request) override;
  // After each batch of completions: frees what finished.
  void reap();
  const ProxyStats& stats() const { return stats_; }

  // The endpoint a CONNECT to `dst` would be sent to now.
  UpstreamChoice choose(const SocketAddress& dst);

 private:
  struct Join {
    std::unique_ptr<StreamJoin> join;
    std::string endpoint_uid;
    bool done = false;
  };

  std::string self_uid_;
  HboneConns* conns_ = nullptr;
  model::SnapshotPtr snapshot_;
  std::list<Join> joins_;
  std::map<std::string, unsigned> in_flight_;  // by endpoint uid
  std::mt19937_64 rng_{std::random_device{}()};
  ProxyStats stats_;
};

}  // namespace nodemesh::waypoint
