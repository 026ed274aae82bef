#pragma once

// An immutable view of the mesh as this node knows it: workloads, services, policies and the
// Gateway API routes the waypoint applies, with lookup indexes. Config sources build one per
// accepted config version and publish it as std::shared_ptr<const Snapshot>; readers keep their
// pointer as long as they need a consistent view. Pointers returned by the lookups stay valid while
// the snapshot lives.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/ip_address.h"
#include "model/authorization.h"
#include "model/destination_rule.h"
#include "model/rate_limit.h"
#include "model/request_authentication.h"
#include "model/route.h"
#include "model/service.h"
#include "model/workload.h"

namespace nodemesh::model {

// The routes whose parentRefs name one Service (any port; the routing engine checks ports).
struct AttachedRoutes {
  std::vector<const HttpRoute*> http;
  std::vector<const GrpcRoute*> grpc;

  bool empty() const { return http.empty() && grpc.empty(); }
};

class Snapshot {
 public:
  Snapshot() = default;
  // Builds the indexes. Keys are expected to be unique (the loaders reject duplicates); if they
  // are not, lookups by uid / key return the first.
  // Routes are optional so that sources and tests without them keep their calls.
  Snapshot(std::vector<Workload> workloads, std::vector<Service> services,
           std::vector<Authorization> policies, std::vector<HttpRoute> http_routes = {},
           std::vector<GrpcRoute> grpc_routes = {}, std::vector<RateLimitPolicy> rate_limits = {},
           std::vector<DestinationRule> destination_rules = {},
           std::vector<RequestAuthentication> request_authentications = {});

  static std::shared_ptr<const Snapshot> create(
      std::vector<Workload> workloads, std::vector<Service> services,
      std::vector<Authorization> policies, std::vector<HttpRoute> http_routes = {},
      std::vector<GrpcRoute> grpc_routes = {}, std::vector<RateLimitPolicy> rate_limits = {},
      std::vector<DestinationRule> destination_rules = {},
      std::vector<RequestAuthentication> request_authentications = {});

  const std::vector<Workload>& workloads() const { return workloads_; }
  const std::vector<Service>& services() const { return services_; }
  const std::vector<Authorization>& policies() const { return policies_; }
  const std::vector<HttpRoute>& httpRoutes() const { return http_routes_; }
  const std::vector<GrpcRoute>& grpcRoutes() const { return grpc_routes_; }
  // The waypoint's local rate limit policies (rate_limit.h), in file order.
  const std::vector<RateLimitPolicy>& rateLimitPolicies() const { return rate_limits_; }
  // Istio DestinationRules (destination_rule.h), in file order.
  const std::vector<DestinationRule>& destinationRules() const { return destination_rules_; }
  // The rule whose host names the service's hostname, if any (the loader allows one per host).
  const DestinationRule* destinationRuleFor(const Service& service) const;
  // Istio RequestAuthentications (request_authentication.h), in file order.
  const std::vector<RequestAuthentication>& requestAuthentications() const {
    return request_authentications_;
  }

  const Workload* workloadByUid(std::string_view uid) const;
  // Network-agnostic. When several workloads share the address, prefers (like ztunnel) a pod
  // over other kinds, then an HBONE workload over a TCP one. HostNetwork workloads are not
  // indexed by address (their address is the node's).
  const Workload* workloadByIp(const IpAddress& ip) const;
  std::vector<const Workload*> workloadsOnNode(std::string_view node) const;
  // By "namespace/name" (the enrolled pod's name in the tunnel's records).
  const Workload* workloadByName(std::string_view namespaced_name) const;

  // Network-agnostic; when two services claim one VIP the later one wins, as in ztunnel.
  const Service* serviceByVip(const IpAddress& ip) const;
  // By "namespace/hostname".
  const Service* serviceByKey(std::string_view key) const;
  // By "namespace/name", the way Kubernetes objects (route parentRefs, backendRefs) name it.
  const Service* serviceByName(std::string_view namespaced_name) const;
  // The service's own endpoints plus one per workload that lists the service (a workload's own
  // entry replaces an explicit endpoint with the same uid). Ordered by workload uid.
  std::vector<Endpoint> endpoints(const Service& service) const;

  // By "namespace/name".
  const Authorization* policy(std::string_view key) const;

  // The routes with a parentRef to the service (by its "namespace/hostname" key): producer
  // routes from the service's namespace and consumer routes from others. Routes keep file order.
  AttachedRoutes routesForService(std::string_view service_key) const;

  bool empty() const {
    return workloads_.empty() && services_.empty() && policies_.empty() && http_routes_.empty() &&
           grpc_routes_.empty() && rate_limits_.empty() && destination_rules_.empty() &&
           request_authentications_.empty();
  }
  // "4 workloads, 1 service, 2 policies", plus ", 3 routes" when there are routes.
  std::string summary() const;

 private:
  std::vector<Workload> workloads_;
  std::vector<Service> services_;
  std::vector<Authorization> policies_;
  std::vector<HttpRoute> http_routes_;
  std::vector<GrpcRoute> grpc_routes_;
  std::vector<RateLimitPolicy> rate_limits_;
  std::vector<DestinationRule> destination_rules_;
  std::map<std::string, size_t, std::less<>> destination_rule_by_host_;
  std::vector<RequestAuthentication> request_authentications_;

  std::map<std::string, size_t, std::less<>> workload_by_uid_;
  std::map<IpAddress, size_t> workload_by_ip_;
  std::map<std::string, size_t, std::less<>> workload_by_name_;
  std::map<IpAddress, size_t> service_by_vip_;
  std::map<std::string, size_t, std::less<>> service_by_key_;
  std::map<std::string, size_t, std::less<>> service_by_name_;
  // Service key -> indexes into http_routes_ / grpc_routes_.
  std::map<std::string, std::vector<size_t>, std::less<>> http_routes_by_service_;
  std::map<std::string, std::vector<size_t>, std::less<>> grpc_routes_by_service_;
  std::map<std::string, size_t, std::less<>> policy_by_key_;
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace nodemesh::model
