#include "xds/xds_source.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "model/snapshot.h"
#include "model/validation.h"
#include "xds/convert.h"

namespace nodemesh::xds {
namespace {

namespace discovery = envoy::service::discovery::v3;
using Rejection = ResourceHandler::Rejection;

// The first error model::validate() finds in one resource on its own.
std::optional<std::string> validationError(const std::vector<model::Workload>& workloads,
                                           const std::vector<model::Service>& services) {
  model::ValidationOptions options;
  options.undefined_policy_is_error = false;
  for (const auto& finding : model::validate(workloads, services, {}, options)) {
    if (finding.severity == model::ValidationFinding::Severity::Error) return finding.message;
  }
  return std::nullopt;
}

// Unpacks `resource` into `message`, or says why not.
template <typename Message>
std::optional<Rejection> unpack(const discovery::Resource& resource, Message& message) {
  const std::string want = "type.googleapis.com/" + message.GetDescriptor()->full_name();
  if (!resource.has_resource()) {
    return Rejection{resource.name(), fmt::format("{}: no resource in it", resource.name())};
  }
  if (resource.resource().type_url() != want) {
    return Rejection{resource.name(), fmt::format("{}: type {}, want {}", resource.name(),
                                                  resource.resource().type_url(), want)};
  }
  if (!resource.resource().UnpackTo(&message)) {
    return Rejection{resource.name(), fmt::format("{}: not a valid {}", resource.name(),
                                                  message.GetDescriptor()->full_name())};
  }
  return std::nullopt;
}

}  // namespace

class XdsSource::AddressHandler final : public ResourceHandler {
 public:
  explicit AddressHandler(XdsSource& source) : source_(source) {}

  std::vector<Rejection> apply(const discovery::DeltaDiscoveryResponse& response) override {
    std::vector<Rejection> rejections;
    bool changed = false;
    for (const auto& name : response.removed_resources()) {
      changed |= source_.workloads_.erase(name) + source_.services_.erase(name) > 0;
    }
    for (const auto& resource : response.resources()) {
      istio::workload::Address address;
      if (auto refused = unpack(resource, address)) {
        rejections.push_back(std::move(*refused));
        continue;
      }
      if (auto refused = applyOne(resource.name(), address)) {
        rejections.push_back(std::move(*refused));
        continue;
      }
      changed = true;
    }
    source_.afterResponse(true, changed);
    return rejections;
  }

 private:
  std::optional<Rejection> applyOne(const std::string& name,
                                    const istio::workload::Address& address) {
    if (address.has_workload()) {
      auto workload = toWorkload(address.workload());
      if (!workload) return Rejection{name, workload.error().message};
      if (workload->uid != name) {
        return Rejection{
            name, fmt::format("workload {}: resource name {} is not its uid", workload->uid, name)};
      }
      // The model's own checks, as for a file (an address listed twice); what depends on other
      // resources only warns there, since they may arrive later.
      if (auto problem = validationError({*workload}, {})) {
        return Rejection{name, fmt::format("workload {}: {}", name, *problem)};
      }
      source_.services_.erase(name);
      source_.workloads_.insert_or_assign(name, std::move(*workload));
      return std::nullopt;
    }
    if (address.has_service()) {
      auto service = toService(address.service());
      if (!service) return Rejection{name, service.error().message};
      if (service->key() != name) {
        return Rejection{name, fmt::format("service {}: resource name {} is not its "
                                           "namespace/hostname",
                                           service->key(), name)};
      }
      if (auto problem = validationError({}, {*service})) {
        return Rejection{name, fmt::format("service {}: {}", name, *problem)};
      }
      source_.workloads_.erase(name);
      source_.services_.insert_or_assign(name, std::move(*service));
      return std::nullopt;
    }
    return Rejection{name,
                     fmt::format("{}: an Address with neither a workload nor a service", name)};
  }

  XdsSource& source_;
};

class XdsSource::AuthorizationHandler final : public ResourceHandler {
 public:
  explicit AuthorizationHandler(XdsSource& source) : source_(source) {}

  std::vector<Rejection> apply(const discovery::DeltaDiscoveryResponse& response) override {
    std::vector<Rejection> rejections;
    bool changed = false;
    for (const auto& name : response.removed_resources()) {
      changed |= source_.policies_.erase(name) > 0;
    }
    for (const auto& resource : response.resources()) {
      istio::security::Authorization message;
      if (auto refused = unpack(resource, message)) {
        rejections.push_back(std::move(*refused));
        continue;
      }
      auto policy = toAuthorization(message);
      if (!policy) {
        rejections.push_back({resource.name(), policy.error().message});
        continue;
      }
      if (policy->key() != resource.name()) {
        rejections.push_back(
            {resource.name(), fmt::format("policy {}: resource name {} is not its namespace/name",
                                          policy->key(), resource.name())});
        continue;
      }
      source_.policies_.insert_or_assign(resource.name(), std::move(*policy));
      changed = true;
    }
    source_.afterResponse(false, changed);
    return rejections;
  }

 private:
  XdsSource& source_;
};

Result<std::unique_ptr<XdsSource>> XdsSource::create(XdsSourceOptions options) {
  auto source = std::make_unique<XdsSource>(std::move(options));
  auto client = AdsClient::create(source->options_.client,
                                  {{kAddressTypeUrl, source->address_handler_.get()},
                                   {kAuthorizationTypeUrl, source->authorization_handler_.get()}});
  if (!client) return client.error();
  source->client_ = std::move(*client);
  return source;
}

XdsSource::XdsSource(XdsSourceOptions options)
    : options_(std::move(options)),
      address_handler_(std::make_unique<AddressHandler>(*this)),
      authorization_handler_(std::make_unique<AuthorizationHandler>(*this)) {}

XdsSource::~XdsSource() {
  stop();
}

Status XdsSource::start(UpdateCallback on_update) {
  {
    const std::lock_guard lock(mutex_);
    on_update_ = std::move(on_update);
  }
  client_->start();
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + options_.initial_timeout;
  delivered_changed_.wait_until(lock, deadline, [this] { return committed_; });
  if (!committed_) {
    abandoned_ = true;
    lock.unlock();
    const AdsStatus status = client_->status();
    client_->stop();
    const double seconds = std::chrono::duration<double>(options_.initial_timeout).count();
    return Error{ETIMEDOUT,
                 fmt::format("no response from istiod at {} within {}s: {}",
                             options_.client.connection.address, seconds,
                             status.last_error.empty() ? std::string("no answer on the stream")
                                                       : status.last_error)};
  }
  // Committed: the first snapshot is being delivered on the client's thread.
  delivered_changed_.wait(lock, [this] { return delivered_; });
  return okStatus();
}

void XdsSource::stop() {
  if (client_) client_->stop();
}

AdsStatus XdsSource::status() const {
  return client_->status();
}

void XdsSource::afterResponse(bool is_address, bool changed) {
  (is_address ? seen_addresses_ : seen_policies_) = true;
  if (!seen_addresses_ || !seen_policies_) return;
  UpdateCallback deliver;
  bool first = false;
  {
    const std::lock_guard lock(mutex_);
    if (abandoned_) return;
    if (committed_ && !changed) return;
    first = !committed_;
    committed_ = true;
    deliver = on_update_;
  }
  std::vector<model::Workload> workloads;
  workloads.reserve(workloads_.size());
  for (const auto& entry : workloads_) workloads.push_back(entry.second);
  std::vector<model::Service> services;
  services.reserve(services_.size());
  for (const auto& entry : services_) services.push_back(entry.second);
  std::vector<model::Authorization> policies;
  policies.reserve(policies_.size());
  for (const auto& entry : policies_) policies.push_back(entry.second);
  auto snapshot =
      model::Snapshot::create(std::move(workloads), std::move(services), std::move(policies));
  spdlog::info("xds: config from istiod: {}", snapshot->summary());
  if (deliver) deliver(std::move(snapshot));
  if (first) {
    {
      const std::lock_guard lock(mutex_);
      delivered_ = true;
    }
    delivered_changed_.notify_all();
  }
}

}  // namespace nodemesh::xds
