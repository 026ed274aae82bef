#pragma once

// The waypoint's endpoints beside the data path, on the agent's ports: the admin API on
// 127.0.0.1:15000 (/stats, /config_dump, /routes, /explain/request), Prometheus metrics on 15020
// (/metrics), readiness on 15021 (/healthz/ready). The handlers' logic is in free functions so
// unit tests call it without sockets.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "common/result.h"
#include "model/snapshot.h"
#include "waypoint/proxy/loop.h"
#include "waypoint/telemetry/request_telemetry.h"

namespace nodemesh::waypoint {

struct AdminInfo {
  std::string workload;  // uid
  std::string identity;  // SPIFFE ID
  std::string config;    // file
};

struct AdminPorts {
  uint16_t admin = 15000;
  uint16_t metrics = 15020;
  uint16_t readiness = 15021;
};

// The Prometheus text of the waypoint's own counters, then Istio's request and TCP metrics
// (reporter="waypoint") when `telemetry` is given.
std::string renderWaypointMetrics(const LoopStats& stats, const RequestTelemetry* telemetry);

// GET /routes: the HTTPRoutes and GRPCRoutes attached to the services that use the waypoint
// workload `self_uid`, as the routing engine sees them (defaults filled in, parents and backends
// resolved to "namespace/name", weights with their shares, filters described).
nlohmann::json routesJson(const model::Snapshot& snapshot, const std::string& self_uid);

// Every query parameter in order, repeated ones included (header=...&header=...).
using QueryParams = std::vector<std::pair<std::string, std::string>>;

// GET /explain/request?service=ns/name&port=80[&method=GET][&path=/x][&host=h]
// [&header=k:v]...[&grpc=1][&source_namespace=ns]: the routing engine's explanation
// (explainRoute(), waypoint/routing/explain.h) as JSON, plus its text under "text". A missing,
// repeated, unknown or malformed parameter, an unknown service or a port the service does not
// have: 400 with {"error": "..."}.
http::HttpResponse explainRequest(const model::SnapshotPtr& snapshot, const std::string& self_uid,
                                  const QueryParams& query);

class AdminServers {
 public:
  using StatsFn = std::function<LoopStats()>;
  using SnapshotFn = std::function<model::SnapshotPtr()>;

  static Result<std::unique_ptr<AdminServers>> start(const AdminInfo& info, AdminPorts ports,
                                                     const StatsFn& stats,
                                                     const SnapshotFn& snapshot,
                                                     const RequestTelemetry* telemetry);
  // Readiness answers 503 from now on (the pod is being stopped).
  void setStopping() { stopping_ = true; }

 private:
  AdminServers() = default;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<http::HttpServer> admin_;
  std::unique_ptr<http::HttpServer> metrics_;
  std::unique_ptr<http::HttpServer> readiness_;
};

}  // namespace nodemesh::waypoint
