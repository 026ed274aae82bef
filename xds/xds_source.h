#pragma once

// The mesh config from istiod: a ConfigSource fed by the delta xDS client (ads_client.h) with
// istio.workload.Address (workloads and services) and istio.security.Authorization resources.
//
// It keeps the converted resources by their xDS name and publishes a new model::Snapshot after
// every response that changed something. Names are istiod's: a workload's is its uid, a
// service's "namespace/hostname", a policy's "namespace/name"; a resource whose name does not
// match its content is refused, because a later removal names it by that key. A refused
// resource is NACKed and its last accepted version (if any) stays in force.

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "config/config_source.h"
#include "model/authorization.h"
#include "model/service.h"
#include "model/workload.h"
#include "xds/ads_client.h"
#include "xds/istiod.h"

namespace nodemesh::xds {

struct XdsSourceOptions {
  AdsClientOptions client;
  // How long start() waits for istiod's first response of both types.
  std::chrono::milliseconds initial_timeout{30000};
};

class XdsSource final : public IstiodConfigSource {
 public:
  // Fails when the client cannot be made (no readable root certificate, bad address).
  static Result<std::unique_ptr<XdsSource>> create(XdsSourceOptions options);

  XdsSource(const XdsSource&) = delete;
  XdsSource& operator=(const XdsSource&) = delete;
  ~XdsSource() override;

  // Connects and waits for the first response of both types, then delivers the first snapshot.
  // Fails with "no response from istiod at ADDR within Ns: <why>" on timeout (and stops).
  Status start(UpdateCallback on_update) override;
  void stop() override;

  // The xDS connection's state, for the admin API and metrics.
  AdsStatus status() const override;

  // Only create() makes one; public for make_unique.
  explicit XdsSource(XdsSourceOptions options);

 private:
  class AddressHandler;
  class AuthorizationHandler;

  // After a response was applied: publishes when both types have been seen and something
  // changed (or nothing was published yet). Client thread only.
  void afterResponse(bool is_address, bool changed);

  const XdsSourceOptions options_;

  // Only the client thread touches these (handlers run there, one at a time).
  std::map<std::string, model::Workload> workloads_;
  std::map<std::string, model::Service> services_;
  std::map<std::string, model::Authorization> policies_;
  bool seen_addresses_ = false;
  bool seen_policies_ = false;

  std::unique_ptr<AddressHandler> address_handler_;
  std::unique_ptr<AuthorizationHandler> authorization_handler_;

  mutable std::mutex mutex_;
  std::condition_variable delivered_changed_;
  UpdateCallback on_update_;
  bool committed_ = false;  // the first snapshot is being delivered; start() will succeed
  bool delivered_ = false;  // ... and on_update returned
  bool abandoned_ = false;  // start() gave up: publish nothing

  std::unique_ptr<AdsClient> client_;  // last: stopped (joined) before the rest is destroyed
};

}  // namespace nodemesh::xds
