#include "waypoint/telemetry/request_labels.h"

#include <charconv>

#include "telemetry/istio_labels.h"

namespace nodemesh::waypoint {

namespace {

enum Label : size_t {
  kReporter,
  kSourceWorkload,
  kSourceCanonicalService,
  kSourceCanonicalRevision,
  kSourceWorkloadNamespace,
  kSourcePrincipal,
  kSourceApp,
  kSourceVersion,
  kSourceCluster,
  kDestinationWorkload,
  kDestinationWorkloadNamespace,
  kDestinationPrincipal,
  kDestinationApp,
  kDestinationVersion,
  kDestinationService,
  kDestinationCanonicalService,
  kDestinationCanonicalRevision,
  kDestinationServiceName,
  kDestinationServiceNamespace,
  kDestinationCluster,
  kRequestProtocol,
  kResponseCode,
  kGrpcResponseStatus,
  kResponseFlags,
  kConnectionSecurityPolicy,
  kLabelCount,
};
static_assert(kLabelCount == kRequestLabelCount, "one enumerator per label name");

template <size_t N>
std::string_view formatNumber(std::array<char, N>& buffer, uint32_t value) {
  // uint32_t has at most 10 digits; the buffers have room for them.
  const std::to_chars_result result =
      std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return {buffer.data(), static_cast<size_t>(result.ptr - buffer.data())};
}

}  // namespace

RequestLabelValues requestLabelValues(const RequestRecord& r, RequestLabelScratch& scratch) {
  RequestLabelValues l;
  l[kReporter] = "waypoint";

  const telemetry::WorkloadLabels src = telemetry::workloadLabels(r.source_workload);
  l[kSourceWorkload] = src.workload;
  l[kSourceCanonicalService] = src.canonical_service;
  l[kSourceCanonicalRevision] = src.canonical_revision;
  l[kSourceWorkloadNamespace] = src.workload_namespace;
  // What mutual TLS proved, never what a header claimed.
  l[kSourcePrincipal] =
      r.mutual_tls ? telemetry::orUnknown(r.source_principal) : telemetry::kUnknown;
  l[kSourceApp] = src.app;
  l[kSourceVersion] = src.version;
  l[kSourceCluster] = src.cluster;

  const telemetry::WorkloadLabels dst = telemetry::workloadLabels(r.destination_workload);
  l[kDestinationWorkload] = dst.workload;
  l[kDestinationWorkloadNamespace] = dst.workload_namespace;
  l[kDestinationPrincipal] = telemetry::orUnknown(r.destination_principal);
  l[kDestinationApp] = dst.app;
  l[kDestinationVersion] = dst.version;
  const telemetry::ServiceLabels svc = telemetry::serviceLabels(r.destination_service);
  l[kDestinationService] = svc.service;
  l[kDestinationCanonicalService] = dst.canonical_service;
  l[kDestinationCanonicalRevision] = dst.canonical_revision;
  l[kDestinationServiceName] = svc.service_name;
  l[kDestinationServiceNamespace] = svc.service_namespace;
  l[kDestinationCluster] = dst.cluster;

  l[kRequestProtocol] = r.grpc ? "grpc" : "http";
  l[kResponseCode] = formatNumber(scratch.response_code_, r.response_code);
  l[kGrpcResponseStatus] =
      r.grpc_status ? formatNumber(scratch.grpc_status_, *r.grpc_status) : std::string_view();
  if (r.response_flags.empty()) {
    l[kResponseFlags] = "-";
  } else {
    scratch.response_flags_ = r.response_flags.toString();
    l[kResponseFlags] = scratch.response_flags_;
  }
  l[kConnectionSecurityPolicy] = r.mutual_tls ? "mutual_tls" : "none";
  return l;
}

}  // namespace nodemesh::waypoint
