#pragma once

// A stand-in for istiod's certificate service (istio.v1.auth.IstioCertificateService) for
// tests: signs CSRs as istiod does, independent of nodemesh's client code. A plain
// grpc::Service, so it can share a grpc::Server (and port) with a stand-in xDS server.
//
// What it does like istiod:
// - the bearer token: when `required_token` is set, a call without `authorization: Bearer
//   <that token>` is UNAUTHENTICATED;
// - the identity: the signed certificate's only URI SAN is the caller's identity
//   (`caller_identity`, what istiod reads from the token), or, with metadata
//   ImpersonatedIdentity, that identity, but only if the test allows it (istiod's node
//   authorizer: pods on the caller's node), else PERMISSION_DENIED. The CSR's own SANs are
//   ignored, as istiod ignores them; the CSR's signature is checked (INVALID_ARGUMENT);
// - validity_duration seconds (<= 0: 24 h), capped at `max_validity`;
// - the answer: [leaf, root] (the root signs leaves directly).

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "common/result.h"
#include "identity/clock.h"
#include "identity/local_ca.h"
#include "identity/spiffe_id.h"
#include "istio/v1/auth/ca.grpc.pb.h"

namespace nodemesh::testing {

// What one call carried, for tests to assert on.
struct CaStandinCall {
  std::string authorization;                         // the header, "" when absent
  std::string cluster_id;                            // `clusterid` header
  std::optional<std::string> impersonated_identity;  // metadata ImpersonatedIdentity
  int64_t validity_seconds = 0;                      // as sent
  std::vector<std::string> csr_uris;                 // URI SANs in the CSR
  std::string csr_key_group;                         // "prime256v1"/"P-256"..., "" if not EC
  std::string signed_identity;                       // SAN of the returned leaf, "" if refused
  grpc::StatusCode status = grpc::StatusCode::OK;
};

struct CaStandinOptions {
  std::string required_token;                    // empty: no token needed
  std::string caller_identity;                   // SPIFFE ID istiod would read from the token
  std::set<std::string> allowed_impersonations;  // SPIFFE IDs the caller may ask for
  std::chrono::seconds max_validity = std::chrono::hours(24 * 90);
};

class CaStandin final : public istio::v1::auth::IstioCertificateService::Service {
 public:
  // `ca` signs (its root is the root returned); both must outlive this.
  CaStandin(identity::LocalCa& ca, CaStandinOptions options);

  grpc::Status CreateCertificate(grpc::ServerContext* context,
                                 const istio::v1::auth::IstioCertificateRequest* request,
                                 istio::v1::auth::IstioCertificateResponse* response) override;

  // The next `n` calls answer UNAVAILABLE (a failing istiod).
  void failNext(int n);
  // The next `n` calls get a leaf for `identity` instead of the one they should get.
  void signWrongIdentityNext(int n, std::string identity);
  // The next `n` calls get, as the root, a self-signed certificate that did not sign the leaf.
  void returnWrongRootNext(int n);
  // The next `n` calls sleep `delay` before answering (a stalled istiod).
  void stallNext(int n, std::chrono::milliseconds delay);
  void allowImpersonation(const std::string& identity);

  std::vector<CaStandinCall> calls() const;

 private:
  grpc::Status handle(grpc::ServerContext* context,
                      const istio::v1::auth::IstioCertificateRequest& request,
                      istio::v1::auth::IstioCertificateResponse& response, CaStandinCall& call);

  identity::LocalCa& ca_;
  CaStandinOptions options_;
  mutable std::mutex mutex_;
  int fail_next_ = 0;
  int wrong_identity_next_ = 0;
  std::string wrong_identity_;
  int wrong_root_next_ = 0;
  int stall_next_ = 0;
  std::chrono::milliseconds stall_{0};
  std::vector<CaStandinCall> calls_;
};

// A self-signed EC P-256 serving certificate for `dns_name` (DNS SAN, serverAuth), PEM: what
// a test's TLS grpc::Server presents as istiod.istio-system.svc and the client trusts.
struct ServingCertificate {
  std::string key_pem;
  std::string cert_pem;
};
Result<ServingCertificate> makeSelfSignedServingCertificate(const std::string& dns_name);

// A grpc::Server on 127.0.0.1 (port chosen by the kernel) over TLS with `serving`, running
// `service` (which must outlive it). Shut it down with a deadline: a stalled call holds it.
struct TlsTestServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};
Result<TlsTestServer> startTlsTestServer(grpc::Service& service, const ServingCertificate& serving);

}  // namespace nodemesh::testing
