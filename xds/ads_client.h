#pragma once

// The delta xDS client: one DeltaAggregatedResources stream to istiod at a time, as ztunnel
// keeps it (src/xds/client.rs), on its own thread.
//
// Rules it follows:
//   - Every new stream gets fresh call headers (addIstiodCallHeaders: the token is re-read from
//     its file, so a rotated token is used from the next stream on).
//   - On each stream, one wildcard request per subscribed type (empty resource_names_subscribe)
//     with the Node, carrying initial_resource_versions = the versions of the resources the
//     client holds, so the server only sends what changed and what was removed meanwhile.
//   - Every response is handed to the handler of its type, then ACKed (response_nonce) or, when
//     the handler rejected any resource, NACKed with error_detail.message = the reasons joined
//     by "; ". The handler applies the valid resources of a NACKed response anyway. Rejected
//     resources are not recorded as held (the server must send them again after a reconnect).
//   - A response of a type nobody subscribed is NACKed ("no handler for type ...").
//   - When the stream fails it is opened again after a backoff that starts at 10 ms, doubles
//     per failure up to 15 s, and starts over once a stream has delivered a response.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "xds/ads_status.h"
#include "xds/istiod_connection.h"

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc
namespace envoy::service::discovery::v3 {
class DeltaDiscoveryResponse;
class Node;
}  // namespace envoy::service::discovery::v3

namespace nodemesh::xds {

inline constexpr const char* kAddressTypeUrl = "type.googleapis.com/istio.workload.Address";
inline constexpr const char* kAuthorizationTypeUrl =
    "type.googleapis.com/istio.security.Authorization";

// Who this agent is to istiod, as ztunnel describes itself. istiod finds the proxy's node and
// cluster from it (and accepts the node agent's CA impersonation for pods on NODE_NAME).
struct NodeInfo {
  std::string instance_ip = "1.1.1.1";  // ztunnel's default when INSTANCE_IP is unset
  std::string pod_name;
  std::string pod_namespace;
  std::string node_name;
  std::string cluster_id = "Kubernetes";
  std::string istio_version;  // empty: not sent
  // Further metadata, names without the ISTIO_META_ prefix; these win over the fields above.
  std::map<std::string, std::string> metadata;

  // From the environment ztunnel's DaemonSet sets: INSTANCE_IP, POD_NAME, POD_NAMESPACE,
  // NODE_NAME, ISTIO_META_CLUSTER_ID (else CLUSTER_ID), ISTIO_META_ISTIO_VERSION (else
  // ISTIO_VERSION) and every ISTIO_META_<NAME>=value as metadata NAME.
  static NodeInfo fromEnvironment();

  // "ztunnel~<INSTANCE_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local"
  std::string nodeId() const;
  // The Node message: id and metadata NAME, NAMESPACE, INSTANCE_IPS, NODE_NAME, CLUSTER_ID,
  // ISTIO_VERSION (when set), then `metadata`.
  void fill(envoy::service::discovery::v3::Node& node) const;
};

// Applies the responses of one type. Called on the client's thread, one response at a time.
class ResourceHandler {
 public:
  struct Rejection {
    std::string name;    // the resource's name
    std::string reason;  // why it is invalid, naming the resource (it goes into the NACK as is)
  };

  virtual ~ResourceHandler() = default;
  // Applies `response` (its resources add or replace by name, removed_resources remove) and
  // returns the resources it refused; the valid ones must be applied even when some are refused.
  virtual std::vector<Rejection> apply(
      const envoy::service::discovery::v3::DeltaDiscoveryResponse& response) = 0;
};

struct AdsClientOptions {
  IstiodConnection connection;
  NodeInfo node;
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{15000};
};

class AdsClient {
 public:
  struct Subscription {
    std::string type_url;
    ResourceHandler* handler;  // not owned; must outlive the client
  };

  using ChannelFactory = std::function<Result<std::shared_ptr<grpc::Channel>>()>;

  // Checks the options (the channel needs a readable root certificate) and the subscriptions
  // (at least one, no duplicate type, no null handler). Nothing is connected yet. Every stream
  // gets a new channel (makeIstiodChannel), as ztunnel's client does: a reused channel would
  // put gRPC's own reconnect backoff (1 s growing to 120 s) under ours.
  static Result<std::unique_ptr<AdsClient>> create(AdsClientOptions options,
                                                   std::vector<Subscription> subscriptions);
  // Every stream on a channel from `make_channel` (tests, or a channel shared with the CA).
  static Result<std::unique_ptr<AdsClient>> create(AdsClientOptions options,
                                                   std::vector<Subscription> subscriptions,
                                                   ChannelFactory make_channel);

  AdsClient(const AdsClient&) = delete;
  AdsClient& operator=(const AdsClient&) = delete;
  ~AdsClient();

  // Starts the client's thread, which connects and keeps reconnecting until stop().
  void start();
  // Cancels the stream and joins the thread; no handler runs after it returns. Idempotent.
  void stop();

  AdsStatus status() const;
  // Whether every subscribed type has been ACKed once, waiting for that until `deadline`.
  bool waitUntilSynced(std::chrono::steady_clock::time_point deadline) const;

  // Only create() makes one; public for make_unique.
  AdsClient(AdsClientOptions options, std::vector<Subscription> subscriptions,
            ChannelFactory make_channel);

 private:
  void run();
  // One stream from open to end; returns whether it delivered a response.
  bool runStream();
  // Applies one response; returns the NACK reason, empty for an ACK.
  std::string handleResponse(const envoy::service::discovery::v3::DeltaDiscoveryResponse& response);

  const AdsClientOptions options_;
  const std::vector<Subscription> subscriptions_;
  const ChannelFactory make_channel_;

  // The versions held per type and name; only the client thread touches them.
  std::map<std::string, std::map<std::string, std::string>> held_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  bool stopping_ = false;
  grpc::ClientContext* stream_context_ = nullptr;  // the open stream's, for stop()
  AdsStatus status_;
  std::thread thread_;
};

}  // namespace nodemesh::xds
