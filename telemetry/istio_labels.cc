#include "telemetry/istio_labels.h"

namespace nodemesh::telemetry {

WorkloadLabels workloadLabels(const model::Workload* w) {
  WorkloadLabels l;
  if (!w) return l;
  // Both lvalues: the view refers to the workload's own string.
  l.workload = w->workload_name.empty() ? w->name : w->workload_name;
  l.workload_namespace = orUnknown(w->namespace_name);
  l.canonical_service = w->canonical_name.empty() ? l.workload : w->canonical_name;
  l.canonical_revision =
      w->canonical_revision.empty() ? std::string_view("latest") : w->canonical_revision;
  l.app = l.canonical_service;
  l.version = l.canonical_revision;
  l.cluster = orUnknown(w->cluster_id);
  return l;
}

ServiceLabels serviceLabels(const model::Service* s) {
  ServiceLabels l;
  if (!s) return l;
  l.service = orUnknown(s->hostname);
  l.service_name = orUnknown(s->name);
  l.service_namespace = orUnknown(s->namespace_name);
  return l;
}

const model::Service* impliedService(const model::Snapshot& snapshot, const model::Workload* w) {
  if (!w || w->services.size() != 1) return nullptr;
  return snapshot.serviceByKey(w->services.begin()->first);
}

}  // namespace nodemesh::telemetry
