#pragma once

// The labels of Istio's request metrics (istio_requests_total, istio_request_duration_
// milliseconds, istio_request_bytes, istio_response_bytes) for a request through the waypoint:
// the same 25 labels, in the same order, as Istio's waypoint reports (istio/proxy's stats
// filter with reporter=waypoint).
//
// requestLabelValues() builds them as views without allocating: recording a request whose
// label set was seen before costs a hash and a lookup, no string copies.

#include <array>
#include <string>
#include <string_view>

#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint {

inline constexpr std::array<std::string_view, 25> kRequestLabelNames = {
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
};
inline constexpr size_t kRequestLabelCount = kRequestLabelNames.size();

using RequestLabelValues = std::array<std::string_view, kRequestLabelCount>;
using RequestLabels = std::array<std::string, kRequestLabelCount>;

// Where the labels that are not views of the record are formatted (response_code,
// grpc_response_status, response_flags). Not copyable: the views point into it.
class RequestLabelScratch {
 public:
  RequestLabelScratch() = default;
  RequestLabelScratch(const RequestLabelScratch&) = delete;
  RequestLabelScratch& operator=(const RequestLabelScratch&) = delete;
  RequestLabelScratch(RequestLabelScratch&&) = delete;
  RequestLabelScratch& operator=(RequestLabelScratch&&) = delete;
  ~RequestLabelScratch() = default;

 private:
  friend RequestLabelValues requestLabelValues(const RequestRecord& r,
                                               RequestLabelScratch& scratch);
  std::array<char, 12> response_code_{};
  std::array<char, 12> grpc_status_{};
  std::string response_flags_;
};

// The label values of `r`, in kRequestLabelNames order; views into `r`, its workloads and
// service, `scratch` and static text. Values follow Istio: "unknown" for what is not known,
// request_protocol "http" or "grpc", response_code "0" when no response was sent,
// grpc_response_status "" unless the response carried one, response_flags "-" for none,
// connection_security_policy "mutual_tls" over HBONE, else "none".
RequestLabelValues requestLabelValues(const RequestRecord& r, RequestLabelScratch& scratch);

}  // namespace nodemesh::waypoint
