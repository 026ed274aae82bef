#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "identity/openssl_ptr.h"
#include "identity/spiffe_id.h"

namespace nodemesh::identity {

// One version of a workload's X.509-SVID: private key, leaf certificate, the intermediates to
// send after it, and what was read out of the leaf. Immutable and shared
// (shared_ptr<const WorkloadCertificate>): rotation makes a new object, holders of the old one
// keep a valid certificate. The private key never leaves this object except into an SSL_CTX;
// there is deliberately no way to serialize it.
class WorkloadCertificate {
 public:
  // Checks that `key` matches `leaf` and that the leaf has exactly one spiffe:// URI SAN;
  // validity is read from the leaf. `chain` holds intermediates only (not the trust root).
  static Result<std::shared_ptr<const WorkloadCertificate>> create(EvpPkeyPtr key, X509Ptr leaf,
                                                                   std::vector<X509Ptr> chain);

  // Only create() can make the tag; public so that make_shared can call the constructor.
  class ConstructionTag {
   private:
    ConstructionTag() = default;
    friend class WorkloadCertificate;
  };
  WorkloadCertificate(ConstructionTag tag, EvpPkeyPtr key, X509Ptr leaf, std::vector<X509Ptr> chain,
                      SpiffeId id, std::chrono::system_clock::time_point not_before,
                      std::chrono::system_clock::time_point not_after);
  WorkloadCertificate(const WorkloadCertificate&) = delete;
  WorkloadCertificate& operator=(const WorkloadCertificate&) = delete;
  ~WorkloadCertificate() = default;

  const SpiffeId& identity() const { return identity_; }
  X509* certificate() const { return leaf_.get(); }
  // For SSL_CTX_use_PrivateKey only.
  EVP_PKEY* privateKey() const { return key_.get(); }
  // Intermediates between the leaf and the root; empty when the root signed the leaf.
  const std::vector<X509Ptr>& chain() const { return chain_; }
  std::chrono::system_clock::time_point notBefore() const { return not_before_; }
  std::chrono::system_clock::time_point notAfter() const { return not_after_; }
  // Half-way through the validity period: when rotation is due.
  std::chrono::system_clock::time_point refreshAt() const {
    return not_before_ + (not_after_ - not_before_) / 2;
  }
  // The leaf's serial number in hex, for logs.
  std::string serialHex() const;
  // Leaf followed by the chain, PEM-encoded (public material only).
  std::string pemCertificate() const;

 private:
  EvpPkeyPtr key_;
  X509Ptr leaf_;
  std::vector<X509Ptr> chain_;
  SpiffeId identity_;
  std::chrono::system_clock::time_point not_before_;
  std::chrono::system_clock::time_point not_after_;
};

// The identity in `cert`: its single spiffe:// URI SAN, parsed strictly. Fails when there is
// none, more than one, or it is malformed.
Result<SpiffeId> spiffeIdFromCertificate(X509* cert);

// PEM text of one certificate.
Result<std::string> certificateToPem(X509* cert);

// The certificate's serial number in upper-case hex ("" if it cannot be read).
std::string certificateSerialHex(const X509* cert);

// ASN1_TIME (UTCTime or GeneralizedTime) as a time_point.
Result<std::chrono::system_clock::time_point> asn1TimeToTimePoint(const ASN1_TIME* t);

}  // namespace nodemesh::identity
