#pragma once

// The labels Istio puts on its standard metrics for each end of a connection or request
// (source_* and destination_*), derived from the config's workloads and services the way istiod
// and ztunnel derive them. The node agent (istio_tcp_*) and the waypoint (istio_requests_total
// and friends) both label with these, so a dashboard groups their series the same way.
//
// Everything is a view into the workload or service, or into static text: building the labels
// of a request costs no allocation (the waypoint does it once per request).

#include <string_view>

#include "model/service.h"
#include "model/snapshot.h"
#include "model/workload.h"

namespace nodemesh::telemetry {

// What Istio reports for a label it cannot know.
inline constexpr std::string_view kUnknown = "unknown";

inline std::string_view orUnknown(std::string_view value) {
  return value.empty() ? kUnknown : value;
}

// One end's workload labels. For a workload: the workload (deployment) name, falling back to the
// pod's name; the canonical service (app) and revision (version), falling back as istiod does
// (the workload name, "latest"); app and version repeat them. All "unknown" without a workload.
struct WorkloadLabels {
  std::string_view workload = kUnknown;
  std::string_view workload_namespace = kUnknown;
  std::string_view canonical_service = kUnknown;
  std::string_view canonical_revision = kUnknown;
  std::string_view app = kUnknown;
  std::string_view version = kUnknown;
  std::string_view cluster = kUnknown;
};
// Valid while `w` lives.
WorkloadLabels workloadLabels(const model::Workload* w);

// destination_service (the hostname), destination_service_name, destination_service_namespace.
struct ServiceLabels {
  std::string_view service = kUnknown;
  std::string_view service_name = kUnknown;
  std::string_view service_namespace = kUnknown;
};
// Valid while `s` lives; all "unknown" for null.
ServiceLabels serviceLabels(const model::Service* s);

// The service to label a connection to a workload with when it was not addressed to a service
// VIP: the one service the workload backs, as Istio labels a connection to a pod IP behind a
// Kubernetes service. Null when the workload backs none or several.
const model::Service* impliedService(const model::Snapshot& snapshot, const model::Workload* w);

}  // namespace nodemesh::telemetry
