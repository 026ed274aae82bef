// Fuzz target: istiod's resources -> the model (xds/convert.h), as XdsSource applies them. The
// input is the serialized protobuf of one resource: it is decoded as an istio.workload.Address
// (a Workload or a Service) and as an istio.security.Authorization; whatever decodes is
// converted, validated on its own (model::validate, as XdsSource does) and, when valid, put in a
// Snapshot together with the others, which indexes it (addresses, VIPs, policies).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "fuzz/fuzz_support.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "model/snapshot.h"
#include "model/validation.h"
#include "xds/convert.h"

namespace model = nodemesh::model;
namespace xds = nodemesh::xds;

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  // Protobuf logs every string field with invalid UTF-8 it parses; null discards its messages.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int length = static_cast<int>(size);
  std::vector<model::Workload> workloads;
  std::vector<model::Service> services;
  std::vector<model::Authorization> policies;

  istio::workload::Address address;
  if (address.ParseFromArray(data, length)) {
    if (address.has_workload()) {
      if (auto workload = xds::toWorkload(address.workload())) {
        workloads.push_back(std::move(*workload));
      }
    }
    if (address.has_service()) {
      if (auto service = xds::toService(address.service())) {
        services.push_back(std::move(*service));
      }
    }
  }
  istio::security::Authorization authorization;
  if (authorization.ParseFromArray(data, length)) {
    if (auto policy = xds::toAuthorization(authorization)) policies.push_back(std::move(*policy));
  }

  model::ValidationOptions options;
  options.undefined_policy_is_error = false;
  if (model::hasErrors(model::validate(workloads, services, policies, options))) return 0;
  auto snapshot =
      model::Snapshot::create(std::move(workloads), std::move(services), std::move(policies));
  (void)snapshot->summary();
  return 0;
}
