#pragma once

// Workload certificates from Istio's CA: istio.v1.auth.IstioCertificateService/CreateCertificate
// on istiod (the same address and channel as xDS), as ztunnel asks for them. Per request: a fresh
// EC P-256 key, a CSR whose only SAN is the SPIFFE URI, validity_duration in seconds, and
// metadata ImpersonatedIdentity = that SPIFFE ID (istiod's node authorizer lets a node agent's
// service account sign for the pods on its node). The answer is accepted only when the leaf
// carries exactly the identity asked for, holds the CSR's key, and verifies (now, per the clock)
// through the returned intermediates to the returned root.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "common/result.h"
#include "identity/certificate_issuer.h"
#include "identity/clock.h"
#include "identity/openssl_ptr.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"
#include "xds/istiod.h"
#include "xds/istiod_connection.h"

namespace nodemesh::xds {

// Parses every PEM certificate in `pem` (at least one). Errors name `what`.
Result<std::shared_ptr<const TrustBundle>> trustBundleFromPem(const std::string& pem,
                                                              const std::string& what);

// Checks a CreateCertificate answer for `id` and turns it into a certificate: `cert_chain` is
// leaf first, then intermediates, the root last (the last element may hold several PEM roots,
// as in Istio). `key` is the key the CSR was made with; `now` is when the chain must be valid.
// On success also returns the roots (the chain's last element), as ztunnel takes them.
struct CheckedChain {
  std::shared_ptr<const identity::WorkloadCertificate> certificate;
  std::shared_ptr<const TrustBundle> trust_bundle;
};
Result<CheckedChain> checkCertificateChain(const identity::SpiffeId& id, identity::EvpPkeyPtr key,
                                           const std::vector<std::string>& cert_chain,
                                           std::chrono::system_clock::time_point now);

struct IstioCaOptions {
  // Deadline of one CreateCertificate call.
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  // Send ImpersonatedIdentity (ztunnel always does; istiod then signs the requested identity
  // for a caller whose token is the node agent's, if the pod runs on the caller's node).
  bool impersonate = true;
};

// A CertificateIssuer backed by Istio's CA. Thread-safe; each issue() is one blocking gRPC call
// bounded by options.timeout. Retrying and backoff are CertificateManager's job.
class IstioCaClient final : public IstiodCa {
 public:
  // `channel` from makeIstiodChannel(connection) (it may be shared with the xDS client);
  // `connection` supplies the per-call token and clusterid headers. Reads the initial trust
  // bundle from connection.root_cert_file (istio-ca-root-cert: in Istio, istiod's serving
  // certificate and the workload certificates share the mesh root). `clock` must outlive this.
  static Result<std::unique_ptr<IstioCaClient>> create(
      const std::shared_ptr<grpc::Channel>& channel, IstiodConnection connection,
      const identity::Clock& clock, IstioCaOptions options = {});

  IstioCaClient(const std::shared_ptr<grpc::Channel>& channel, IstiodConnection connection,
                const identity::Clock& clock, IstioCaOptions options,
                std::shared_ptr<const TrustBundle> initial_bundle);
  IstioCaClient(const IstioCaClient&) = delete;
  IstioCaClient& operator=(const IstioCaClient&) = delete;
  ~IstioCaClient() override;

  // One CreateCertificate call for `id`. Errors say what was wrong: the gRPC status (code and
  // message), an empty or unparsable answer, a leaf for another identity, a chain that does not
  // verify or has expired.
  Result<std::shared_ptr<const identity::WorkloadCertificate>> issue(
      const identity::SpiffeId& id, std::chrono::seconds validity) override;

  // The roots the last accepted answer ended with (before the first one: the roots read from
  // connection.root_cert_file). A new bundle is a new object; holders of the old keep it.
  std::shared_ptr<const TrustBundle> trustBundle() const override;

 private:
  class Stub;
  std::unique_ptr<Stub> stub_;
  const IstiodConnection connection_;
  const identity::Clock& clock_;
  const IstioCaOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<const TrustBundle> bundle_;
};

}  // namespace nodemesh::xds
