#pragma once

#include <chrono>
#include <memory>

#include "common/result.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"

namespace nodemesh::identity {

inline constexpr std::chrono::seconds kDefaultCertificateValidity = std::chrono::hours(24);

// Where workload certificates come from: the embedded LocalCa, later Istio's CA
// (IstioCertificateService/CreateCertificate). Implementations are thread-safe.
class CertificateIssuer {
 public:
  virtual ~CertificateIssuer() = default;
  // A fresh key and certificate for `id`, valid from now for `validity` (an issuer may shorten
  // it, e.g. to its own root's lifetime).
  virtual Result<std::shared_ptr<const WorkloadCertificate>> issue(
      const SpiffeId& id, std::chrono::seconds validity) = 0;
};

}  // namespace nodemesh::identity
