#pragma once

// A stand-in for istiod's xDS server in tests: a grpc::Server over TLS that serves
// envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources the way istiod
// serves ztunnel, for any type URL (the tests use istio.workload.Address and
// istio.security.Authorization).
//
// Covered, as istiod behaves:
//   - TLS with a serving certificate for `istiod.istio-system.svc` (EC P-256, DNS SAN) signed by
//     a root the test gives (PEM key and certificate) or one the stand-in makes.
//   - Optional bearer token: a stream without `authorization: Bearer <token>` ends with
//     UNAUTHENTICATED before anything is read.
//   - Wildcard subscriptions: the first request of a type on a stream subscribes it; the stream
//     then gets one response with everything the client does not hold yet — resources whose
//     version differs from initial_resource_versions (or that it did not name) and, in
//     removed_resources, names it holds that no longer exist. That response is sent even when
//     empty (istiod answers every initial wildcard request; clients wait for it to be ready).
//   - setResource()/removeResource() push a delta with a fresh nonce and system_version_info
//     to every stream subscribed to the type. Each resource version is the global version
//     counter at its last change.
//   - Requests that name a response_nonce are ACKs, or NACKs when error_detail is set; both are
//     recorded and otherwise ignored (istiod does not resend on a NACK).
//   - stop() ends every stream (the client sees UNAVAILABLE or CANCELLED) and start() serves
//     again on the same port, with the resources kept.
// Not covered: ADS for Envoy types and SotW (the non-delta stream), explicit (non-wildcard)
// subscriptions and unsubscribe, on-demand resources, istiod's push debouncing, per-proxy
// filtering (every stream gets every resource of its types), waiting for an ACK before the next
// push, resource TTLs and aliases, and istiod's token review (the token is compared as a
// string).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "common/result.h"

namespace grpc {
class Server;
class Service;
}  // namespace grpc

namespace nodemesh::testing {

class IstiodStandin {
 public:
  static constexpr const char* kServerName = "istiod.istio-system.svc";

  struct Options {
    std::string address = "127.0.0.1:0";  // port 0: the kernel picks one (kept across restarts)
    // The root that signs the serving certificate; both empty: the stand-in makes one.
    std::string root_cert_pem;
    std::string root_key_pem;
    std::string token;  // required bearer token; empty: any (or no) authorization is accepted
    // More services on the same port (the CA stand-in). Not owned; must outlive the server.
    std::vector<grpc::Service*> extra;
  };

  // One request as received, in order across streams.
  struct Request {
    int stream = 0;  // 1, 2, ... per accepted stream
    std::string node_id;
    std::map<std::string, std::string> node_metadata;  // string values only
    std::string type_url;
    std::vector<std::string> subscribe;
    std::map<std::string, std::string> initial_resource_versions;
    std::string response_nonce;
    bool nack = false;
    std::string error_message;  // error_detail.message of a NACK
  };

  // Each stream as opened, with its call headers.
  struct Stream {
    int id = 0;
    std::string authorization;
    std::string cluster_id;
    bool refused = false;  // ended UNAUTHENTICATED
  };

  // One response sent.
  struct Response {
    int stream = 0;
    std::string type_url;
    std::string nonce;
    std::string version;
    std::vector<std::string> names;    // resources sent
    std::vector<std::string> removed;  // removed_resources
  };

  // Makes the serving certificate and starts serving. Fails when the address cannot be bound or
  // the given root cannot be read.
  static Result<std::unique_ptr<IstiodStandin>> start(Options options);

  IstiodStandin(const IstiodStandin&) = delete;
  IstiodStandin& operator=(const IstiodStandin&) = delete;
  ~IstiodStandin();

  // Ends every stream and stops listening. Idempotent.
  void stop();
  // Serves again on the same port after stop().
  Status restart();

  // "127.0.0.1:<port>"
  std::string address() const;
  // The root the serving certificate chains to, for the client's root_cert_file.
  const std::string& rootCertPem() const;
  const std::string& rootKeyPem() const;

  // Adds or replaces resource `name` of `type_url` and pushes it to the subscribed streams.
  // `message` is packed into the Any (its full name gives the Any's type URL).
  void setResource(const std::string& type_url, const std::string& name,
                   const google::protobuf::Message& message);
  // Same, with bytes that are not a valid message of the type (to test NACKs).
  void setRawResource(const std::string& type_url, const std::string& name,
                      const std::string& any_type_url, const std::string& bytes);
  // Removes it and pushes the removal. Unknown names are ignored.
  void removeResource(const std::string& type_url, const std::string& name);

  std::vector<Request> requests() const;
  std::vector<Stream> streams() const;
  std::vector<Response> responses() const;
  // Waits until `done(requests())` holds; false on timeout.
  bool waitForRequests(const std::function<bool(const std::vector<Request>&)>& done,
                       std::chrono::milliseconds timeout) const;
  // Streams currently open and subscribed to at least one type.
  int openStreams() const;

  struct Impl;
  explicit IstiodStandin(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nodemesh::testing
