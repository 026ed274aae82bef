#pragma once

// How nodemesh reaches istiod (xDS and CA share one address, as ztunnel's do): a gRPC channel
// over TLS that trusts istiod's root certificate, and the per-call headers istiod expects.

#include <memory>
#include <string>

#include "common/result.h"

// Declared, not included: the agent includes this header (through xds/istiod.h) without gRPC.
namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace nodemesh::xds {

inline constexpr const char* kDefaultIstiodAddress = "istiod.istio-system.svc:15012";

struct IstiodConnection {
  std::string address = kDefaultIstiodAddress;  // host:port
  // PEM file with the root(s) that signed istiod's serving certificate (the `istio-ca-root-cert`
  // ConfigMap's root-cert.pem). Required: istiod is only ever reached over TLS.
  std::string root_cert_file;
  // The projected service-account token (audience istio-ca), re-read on every call because the
  // kubelet rotates it; empty sends no authorization header (a stand-in or a test).
  std::string token_file;
  // Sent as the `clusterid` header: which cluster's registry istiod should look our node up in.
  std::string cluster_id = "Kubernetes";
  // The name istiod's certificate is checked against; empty means the host part of `address`.
  // Set it when the address is an IP (e.g. "istiod.istio-system.svc").
  std::string tls_server_name;
};

// A channel to istiod. Fails when the root certificate file cannot be read or holds no PEM
// certificate, or the address has no port; connecting itself is lazy (gRPC retries it).
Result<std::shared_ptr<grpc::Channel>> makeIstiodChannel(const IstiodConnection& connection);

// Adds `authorization: Bearer <token>` (read from token_file now) and `clusterid` to a call.
// Fails when the token file is set but cannot be read or is empty.
Status addIstiodCallHeaders(grpc::ClientContext& context, const IstiodConnection& connection);

}  // namespace nodemesh::xds
