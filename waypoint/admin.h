#pragma once

// The waypoint's endpoints beside the data path, on the agent's ports: the admin API on
// 127.0.0.1:15000 (/stats, /config_dump), Prometheus metrics on 15020 (/metrics), readiness on
// 15021 (/healthz/ready).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

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
