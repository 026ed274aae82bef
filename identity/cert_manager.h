#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/result.h"
#include "identity/certificate_issuer.h"
#include "identity/clock.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"

namespace nodemesh::identity {

// The current certificate of every local workload identity. Thread-safe. Certificates are
// shared_ptr<const>: rotation replaces the map entry, and whoever holds the previous version
// (an SSL_CTX being built, a connection pool) keeps a valid object.
class CertificateManager {
 public:
  // `issuer` and `clock` must outlive the manager.
  CertificateManager(CertificateIssuer& issuer, const Clock& clock,
                     std::chrono::seconds validity = kDefaultCertificateValidity);
  CertificateManager(const CertificateManager&) = delete;
  CertificateManager& operator=(const CertificateManager&) = delete;
  ~CertificateManager() = default;

  // The current certificate for `id`, issued on first use (and again if the current one has
  // expired, e.g. after rotation kept failing). Issuing happens outside the lock.
  Result<std::shared_ptr<const WorkloadCertificate>> get(const SpiffeId& id);

  // Reissues every certificate past half its lifetime (WorkloadCertificate::refreshAt, per the
  // clock); returns how many were replaced. A failed reissue keeps the old certificate and is
  // retried on the next call (counted in rotationFailures()).
  size_t rotateDue();

  // Drops `id` (its pod left the node). Holders of its certificate are unaffected.
  void forget(const SpiffeId& id);

  size_t size() const;
  // Every current certificate, ordered by identity (for the admin API and metrics).
  std::vector<std::shared_ptr<const WorkloadCertificate>> certificates() const;
  uint64_t rotationFailures() const;
  // The earliest refreshAt() over all certificates, for scheduling the next rotateDue();
  // time_point::max() when there are none.
  std::chrono::system_clock::time_point nextRotation() const;

 private:
  CertificateIssuer& issuer_;
  const Clock& clock_;
  const std::chrono::seconds validity_;
  mutable std::mutex mutex_;
  std::map<SpiffeId, std::shared_ptr<const WorkloadCertificate>> certs_;
  uint64_t rotation_failures_ = 0;
};

}  // namespace nodemesh::identity
