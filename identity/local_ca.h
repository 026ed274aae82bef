#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "identity/certificate_issuer.h"
#include "identity/clock.h"
#include "identity/openssl_ptr.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"

namespace nodemesh::identity {

// The embedded certificate authority: an EC P-256 root kept in a state directory, which signs
// workload certificates directly (no intermediate). Thread-safe.
class LocalCa final : public CertificateIssuer {
 public:
  static constexpr const char* kKeyFile = "ca-key.pem";
  static constexpr const char* kCertFile = "ca-cert.pem";
  static constexpr const char* kLockFile = "ca.lock";
  static constexpr std::chrono::seconds kRootValidity = std::chrono::hours(24 * 3650);
  // notBefore is backdated by this much to tolerate clock skew between nodes.
  static constexpr std::chrono::seconds kBackdate = std::chrono::minutes(1);

  // Loads the root from `state_dir`, or creates it there on first start (state_dir is made
  // 0700 if missing; key and certificate are written 0600 via temp file + rename). Processes
  // and threads racing on one state_dir serialize on flock(ca.lock) and end up with the same
  // root. Refuses a key file accessible by group or others, a key and certificate that do not
  // match, corrupt PEM, a root for another trust domain, and an expired root. `clock` must
  // outlive the CA.
  static Result<std::unique_ptr<LocalCa>> loadOrCreate(const std::string& state_dir,
                                                       const std::string& trust_domain,
                                                       const Clock& clock);

  // Only loadOrCreate() can make the tag; public so that make_unique can call the constructor.
  class ConstructionTag {
   private:
    ConstructionTag() = default;
    friend class LocalCa;
  };
  LocalCa(ConstructionTag tag, std::string trust_domain, const Clock& clock, EvpPkeyPtr key,
          X509Ptr cert, std::string pem, std::chrono::system_clock::time_point root_not_after);
  LocalCa(const LocalCa&) = delete;
  LocalCa& operator=(const LocalCa&) = delete;
  ~LocalCa() override = default;

  // A fresh EC P-256 key and a leaf certificate for `id` (which must be in this CA's trust
  // domain): URI SAN = id, CA:FALSE, digitalSignature+keyEncipherment, serverAuth+clientAuth,
  // random serial, valid from now - kBackdate to now + validity (capped at the root's expiry).
  Result<std::shared_ptr<const WorkloadCertificate>> issue(const SpiffeId& id,
                                                           std::chrono::seconds validity) override;
  Result<std::shared_ptr<const WorkloadCertificate>> issue(const SpiffeId& id) {
    return issue(id, kDefaultCertificateValidity);
  }

  // The certificate issue() makes, for a public key that someone else holds (a CSR's key, as a
  // CA service signs it): same extensions, serial, validity and trust-domain check. Used by the
  // stand-in of Istio's CA in the tests.
  Result<X509Ptr> signPublicKey(const SpiffeId& id, EVP_PKEY* public_key,
                                std::chrono::seconds validity);

  X509* rootCertificate() const { return root_cert_.get(); }
  const std::string& rootCertificatePem() const { return root_pem_; }
  const std::string& trustDomain() const { return trust_domain_; }

 private:
  const std::string trust_domain_;
  const Clock& clock_;
  const EvpPkeyPtr root_key_;
  const X509Ptr root_cert_;
  const std::string root_pem_;
  const std::chrono::system_clock::time_point root_not_after_;
  std::mutex sign_mutex_;  // X509_sign with the shared root key, one at a time
};

}  // namespace nodemesh::identity
