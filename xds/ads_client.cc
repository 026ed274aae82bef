#include "xds/ads_client.h"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include "envoy/service/discovery/v3/discovery.grpc.pb.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in a header

namespace nodemesh::xds {
namespace {

namespace discovery = envoy::service::discovery::v3;

constexpr std::string_view kMetaPrefix = "ISTIO_META_";

std::string envOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read at startup
  return value != nullptr ? std::string(value) : std::move(fallback);
}

void setString(google::protobuf::Struct& metadata, const std::string& key,
               const std::string& value) {
  (*metadata.mutable_fields())[key].set_string_value(value);
}

std::string describe(const grpc::Status& status) {
  return fmt::format("gRPC status {} ({})", static_cast<int>(status.error_code()),
                     status.error_message().empty() ? "no message" : status.error_message());
}

}  // namespace

NodeInfo NodeInfo::fromEnvironment() {
  NodeInfo info;
  info.instance_ip = envOr("INSTANCE_IP", info.instance_ip);
  info.pod_name = envOr("POD_NAME", "");
  info.pod_namespace = envOr("POD_NAMESPACE", "");
  info.node_name = envOr("NODE_NAME", "");
  info.cluster_id = envOr("ISTIO_META_CLUSTER_ID", envOr("CLUSTER_ID", info.cluster_id));
  info.istio_version = envOr("ISTIO_META_ISTIO_VERSION", envOr("ISTIO_VERSION", ""));
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const auto equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    const std::string_view key = text.substr(0, equals);
    if (key.size() <= kMetaPrefix.size() || key.substr(0, kMetaPrefix.size()) != kMetaPrefix) {
      continue;
    }
    info.metadata[std::string(key.substr(kMetaPrefix.size()))] =
        std::string(text.substr(equals + 1));
  }
  return info;
}

std::string NodeInfo::nodeId() const {
  return fmt::format("ztunnel~{}~{}.{}~{}.svc.cluster.local", instance_ip, pod_name, pod_namespace,
                     pod_namespace);
}

void NodeInfo::fill(discovery::Node& node) const {
  node.set_id(nodeId());
  auto& fields = *node.mutable_metadata();
  setString(fields, "NAME", pod_name);
  setString(fields, "NAMESPACE", pod_namespace);
  setString(fields, "INSTANCE_IPS", instance_ip);
  setString(fields, "NODE_NAME", node_name);
  setString(fields, "CLUSTER_ID", cluster_id);
  if (!istio_version.empty()) setString(fields, "ISTIO_VERSION", istio_version);
  for (const auto& [key, value] : metadata) setString(fields, key, value);
}

Result<std::unique_ptr<AdsClient>> AdsClient::create(AdsClientOptions options,
                                                     std::vector<Subscription> subscriptions) {
  // Checked once here so that a bad root certificate fails create(), not every stream.
  if (auto channel = makeIstiodChannel(options.connection); !channel) return channel.error();
  IstiodConnection connection = options.connection;
  return create(std::move(options), std::move(subscriptions),
                [connection] { return makeIstiodChannel(connection); });
}

Result<std::unique_ptr<AdsClient>> AdsClient::create(AdsClientOptions options,
                                                     std::vector<Subscription> subscriptions,
                                                     ChannelFactory make_channel) {
  if (subscriptions.empty()) return Error::invalid("xds client: no type subscribed");
  std::set<std::string> seen;
  for (const auto& subscription : subscriptions) {
    if (subscription.handler == nullptr) {
      return Error::invalid(fmt::format("xds client: no handler for {}", subscription.type_url));
    }
    if (!seen.insert(subscription.type_url).second) {
      return Error::invalid(fmt::format("xds client: {} subscribed twice", subscription.type_url));
    }
  }
  if (!make_channel) return Error::invalid("xds client: no channel factory");
  if (options.initial_backoff.count() <= 0 || options.max_backoff < options.initial_backoff) {
    return Error::invalid("xds client: backoff must be positive and initial <= max");
  }
  return std::make_unique<AdsClient>(std::move(options), std::move(subscriptions),
                                     std::move(make_channel));
}

AdsClient::AdsClient(AdsClientOptions options, std::vector<Subscription> subscriptions,
                     ChannelFactory make_channel)
    : options_(std::move(options)),
      subscriptions_(std::move(subscriptions)),
      make_channel_(std::move(make_channel)) {
  status_.address = options_.connection.address;
  for (const auto& subscription : subscriptions_) status_.types[subscription.type_url] = {};
}

AdsClient::~AdsClient() {
  stop();
}

void AdsClient::start() {
  const std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void AdsClient::stop() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
    if (stream_context_ != nullptr) stream_context_->TryCancel();
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

AdsStatus AdsClient::status() const {
  const std::lock_guard lock(mutex_);
  return status_;
}

bool AdsClient::waitUntilSynced(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_until(lock, deadline, [this] {
    return std::all_of(status_.types.begin(), status_.types.end(),
                       [](const auto& entry) { return entry.second.synced; });
  });
}

void AdsClient::run() {
  auto backoff = options_.initial_backoff;
  for (;;) {
    const bool delivered = runStream();
    if (delivered) backoff = options_.initial_backoff;
    {
      std::unique_lock lock(mutex_);
      if (changed_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    }
    backoff = std::min(options_.max_backoff, backoff * 2);
  }
}

bool AdsClient::runStream() {
  grpc::ClientContext context;
  auto channel = make_channel_();
  Status headers = channel ? addIstiodCallHeaders(context, options_.connection) : channel.error();
  if (!headers) {
    spdlog::warn("xds: cannot open a stream to {}: {}", options_.connection.address,
                 headers.error().message);
    const std::lock_guard lock(mutex_);
    status_.last_error = headers.error().message;
    return false;
  }
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) return false;
    stream_context_ = &context;
    ++status_.connects;
  }
  auto stub = discovery::AggregatedDiscoveryService::NewStub(*channel);
  auto stream = stub->DeltaAggregatedResources(&context);

  bool writing = true;
  for (const auto& subscription : subscriptions_) {
    discovery::DeltaDiscoveryRequest request;
    options_.node.fill(*request.mutable_node());
    request.set_type_url(subscription.type_url);
    for (const auto& [name, version] : held_[subscription.type_url]) {
      (*request.mutable_initial_resource_versions())[name] = version;
    }
    if (!stream->Write(request)) {
      writing = false;
      break;
    }
  }

  bool delivered = false;
  discovery::DeltaDiscoveryResponse response;
  while (writing && stream->Read(&response)) {
    if (!delivered) {
      delivered = true;
      const std::lock_guard lock(mutex_);
      status_.connected = true;
      status_.last_error.clear();
    }
    const std::string reason = handleResponse(response);
    discovery::DeltaDiscoveryRequest answer;
    answer.set_type_url(response.type_url());
    answer.set_response_nonce(response.nonce());
    if (!reason.empty()) {
      answer.mutable_error_detail()->set_code(grpc::StatusCode::INVALID_ARGUMENT);
      answer.mutable_error_detail()->set_message(reason);
    }
    if (!stream->Write(answer)) break;
    {
      const std::lock_guard lock(mutex_);
      // An unsubscribed type has no entry (it must not count for readiness).
      AdsTypeStatus ignored;
      auto found = status_.types.find(response.type_url());
      auto& type = found != status_.types.end() ? found->second : ignored;
      if (reason.empty()) {
        ++status_.acks;
        ++type.acks;
        type.acked_version = response.system_version_info();
        type.acked_nonce = response.nonce();
        type.synced = true;
      } else {
        ++status_.nacks;
        ++type.nacks;
        status_.last_nack = AdsNack{response.type_url(), response.nonce(), reason,
                                    std::chrono::system_clock::now()};
      }
    }
    changed_.notify_all();
  }

  const grpc::Status end = stream->Finish();
  const std::lock_guard lock(mutex_);
  stream_context_ = nullptr;
  status_.connected = false;
  ++status_.disconnects;
  if (!stopping_) {
    status_.last_error = end.ok() ? std::string("the server closed the stream") : describe(end);
    spdlog::warn("xds: stream to {} ended: {}", options_.connection.address, status_.last_error);
  }
  return delivered;
}

std::string AdsClient::handleResponse(const discovery::DeltaDiscoveryResponse& response) {
  const std::string& type_url = response.type_url();
  {
    const std::lock_guard lock(mutex_);
    ++status_.responses;
    auto found = status_.types.find(type_url);
    if (found != status_.types.end()) ++found->second.responses;
  }
  const auto subscription =
      std::find_if(subscriptions_.begin(), subscriptions_.end(),
                   [&](const Subscription& each) { return each.type_url == type_url; });
  if (subscription == subscriptions_.end()) {
    return fmt::format("no handler for type {}", type_url);
  }
  const std::vector<ResourceHandler::Rejection> rejections = subscription->handler->apply(response);

  std::set<std::string> rejected;
  std::string reason;
  for (const auto& rejection : rejections) {
    rejected.insert(rejection.name);
    if (!reason.empty()) reason.append("; ");
    reason.append(rejection.reason);
  }
  if (!rejections.empty() && reason.empty()) reason = "rejected without a reason";
  // Rejected resources are not held: the version named after a reconnect is the last one
  // accepted (or none), so the server sends the current one again.
  auto& held = held_[type_url];
  for (const auto& name : response.removed_resources()) held.erase(name);
  for (const auto& resource : response.resources()) {
    if (rejected.count(resource.name()) == 0) held[resource.name()] = resource.version();
  }
  if (!reason.empty()) {
    spdlog::error("xds: NACK {} nonce {}: {}", type_url, response.nonce(), reason);
  }
  const std::lock_guard lock(mutex_);
  status_.types[type_url].resources = held.size();
  return reason;
}

}  // namespace nodemesh::xds
