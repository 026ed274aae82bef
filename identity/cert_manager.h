#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "identity/certificate_issuer.h"
#include "identity/clock.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"

namespace nodemesh::identity {

// After a failed issue for an identity the next attempt waits 1 s, then 2 s, 4 s, ... at most
// 150 s (ztunnel's cap), and never past the expiry of the certificate still in use. A success
// resets it. Deterministic (no jitter): one agent per node asks for its own pods only.
inline constexpr std::chrono::seconds kIssueRetryInitial{1};
inline constexpr std::chrono::seconds kIssueRetryMax{150};

// The manager's counters, declared once (Envoy's ALL_*_STATS pattern): the struct and its
// field list for logs and metrics come from this.
#define NODEMESH_CERT_MANAGER_COUNTERS(COUNTER)                                   \
  COUNTER(issue_requests)    /* calls to the issuer (first issue and rotation) */ \
  COUNTER(issue_failures)    /* of those, the ones that failed */                 \
  COUNTER(rotations)         /* certificates replaced at half-life */             \
  COUNTER(rotation_failures) /* failed reissues at half-life (the old one stays) */

struct CertificateManagerStats {
#define NODEMESH_CERT_MANAGER_FIELD(name) uint64_t name = 0;
  NODEMESH_CERT_MANAGER_COUNTERS(NODEMESH_CERT_MANAGER_FIELD)
#undef NODEMESH_CERT_MANAGER_FIELD
};

// One identity as the manager sees it, for the admin API and metrics.
struct CertificateStatus {
  SpiffeId identity;
  // Null while no certificate could be issued yet.
  std::shared_ptr<const WorkloadCertificate> certificate;
  // notAfter - now (negative once expired); zero without a certificate.
  std::chrono::system_clock::duration time_to_expiry{};
  // Failed attempts since the last success, when the next one is due, and why the last failed.
  uint32_t consecutive_failures = 0;
  std::chrono::system_clock::time_point next_attempt{};
  std::string last_error;
};

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
  // expired, e.g. after rotation kept failing). Issuing happens outside the lock. While `id` is
  // backing off after a failure, fails at once (EAGAIN, with the last error) without asking the
  // issuer: a burst of connections must not become a burst of CA calls.
  Result<std::shared_ptr<const WorkloadCertificate>> get(const SpiffeId& id);

  // Call periodically (at the latest at nextRotation()). Reissues every certificate past half
  // its lifetime (WorkloadCertificate::refreshAt, per the clock) and retries identities whose
  // first issue failed, each only once its backoff is over; returns how many certificates were
  // issued. A failed reissue keeps the old certificate.
  size_t rotateDue();

  // Drops `id` (its pod left the node). Holders of its certificate are unaffected.
  void forget(const SpiffeId& id);

  size_t size() const;
  // Every current certificate, ordered by identity (for the admin API and metrics).
  std::vector<std::shared_ptr<const WorkloadCertificate>> certificates() const;
  uint64_t rotationFailures() const;
  CertificateManagerStats stats() const;
  // Every identity, with or without a certificate, ordered by identity.
  std::vector<CertificateStatus> status() const;
  // When rotateDue() next has work: the earliest refreshAt() (or retry time, while backing
  // off) over all identities; time_point::max() when there are none.
  std::chrono::system_clock::time_point nextRotation() const;

 private:
  struct Entry {
    std::shared_ptr<const WorkloadCertificate> cert;  // null until the first success
    uint32_t failures = 0;
    std::chrono::system_clock::time_point retry_at{};
    std::string last_error;
  };
  // Books a failed issue for `entry` at `now`: the next attempt per the backoff.
  static void recordFailure(Entry& entry, std::chrono::system_clock::time_point now,
                            const Error& error);
  // When rotateDue() has work for `entry`.
  static std::chrono::system_clock::time_point dueAt(const Entry& entry);

  CertificateIssuer& issuer_;
  const Clock& clock_;
  const std::chrono::seconds validity_;
  mutable std::mutex mutex_;
  std::map<SpiffeId, Entry> entries_;
  CertificateManagerStats stats_;
};

}  // namespace nodemesh::identity
