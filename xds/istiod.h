#pragma once

// What the agent uses of istiod, as an interface: the mesh config over delta xDS and
// certificates from Istio's CA. The implementation lives in a module of its own
// (libnodemesh-istiod.so, xds/istiod_module.cc) that the agent loads with dlopen only when it is
// started with --xds-address or --ca-address: gRPC, protobuf and abseil (about 40 shared
// libraries) are then mapped; an agent on the local config file never maps them, which keeps
// some 6.5 MB of code pages out of its resident memory (bench/README.md, "Memory").
//
// This header and those it includes must not need gRPC or protobuf, and everything the agent
// calls here is either inline or virtual: nodemesh_agent_lib links only nodemesh_xds_api, so a
// call into the xDS code proper fails to link.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "config/config_source.h"
#include "identity/certificate_issuer.h"
#include "identity/clock.h"
#include "identity/openssl_ptr.h"
#include "xds/ads_status.h"
#include "xds/istiod_connection.h"

namespace nodemesh::xds {

// The roots a peer's chain must end at: what the TLS context factory trusts. Immutable.
struct TrustBundle {
  std::vector<identity::X509Ptr> roots;
  std::string pem;  // the same roots, PEM, for the admin API
  // Raw pointers for tls::TlsContextFactory::create (valid while this bundle lives).
  std::vector<X509*> rawRoots() const {
    std::vector<X509*> out;
    out.reserve(roots.size());
    for (const auto& root : roots) out.push_back(root.get());
    return out;
  }
};

// The mesh config from istiod (XdsSource).
class IstiodConfigSource : public config::ConfigSource {
 public:
  // The xDS connection's state, for the admin API and metrics.
  virtual AdsStatus status() const = 0;
};

// Workload certificates from Istio's CA (IstioCaClient).
class IstiodCa : public identity::CertificateIssuer {
 public:
  // The roots the last accepted answer ended with; a new bundle is a new object.
  virtual std::shared_ptr<const TrustBundle> trustBundle() const = 0;
};

struct IstiodConfigOptions {
  IstiodConnection connection;
  // The Node sent to istiod comes from the environment ztunnel's DaemonSet sets (NODE_NAME,
  // POD_NAME, ...); node_name is used when NODE_NAME is unset.
  std::string node_name;
  std::string cluster_id = "Kubernetes";
  // How long start() waits for istiod's first response of both types.
  std::chrono::milliseconds initial_timeout{30000};
};

class Istiod {
 public:
  virtual ~Istiod() = default;
  // Fails when the client cannot be made (no readable root certificate, bad address).
  virtual Result<std::unique_ptr<IstiodConfigSource>> configSource(IstiodConfigOptions options) = 0;
  // Reads the initial trust bundle from connection.root_cert_file; `clock` must outlive the CA.
  virtual Result<std::unique_ptr<IstiodCa>> certificateAuthority(const IstiodConnection& connection,
                                                                 const identity::Clock& clock) = 0;
};

// The module's one exported function: `extern "C" Istiod* nodemesh_istiod_module(int abi)`. It
// returns the module's Istiod (it lives as long as the process), or null when `abi` is not the
// kIstiodModuleAbi it was built with: an agent and a module from different builds of this
// interface refuse each other instead of crashing.
inline constexpr const char* kIstiodModuleEntry = "nodemesh_istiod_module";
inline constexpr int kIstiodModuleAbi = 1;
using IstiodModuleEntry = Istiod* (*)(int abi);

}  // namespace nodemesh::xds
