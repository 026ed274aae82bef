#pragma once

// Shared by the routing tests: a mesh of services to route between, routes written as the YAML a
// user writes (loaded through the local config parser, so the tests see validated routes), and
// request heads.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/local/local_config.h"
#include "waypoint/routing/route_table.h"

namespace nodemesh::waypoint::routing_test {

// shop/cart (ports 80 and 9000), shop/cart-v1, shop/cart-v2 (port 80), shop/greeter (9090),
// shop/greeter-v2 (9090), shop/shadow (80).
inline const char* const kServices =
    "services:\n"
    "- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local, vips: ['/10.96.0.20'],"
    " ports: {80: 8080, 9000: 9000}}\n"
    "- {name: cart-v1, namespace: shop, hostname: cart-v1.shop.svc.cluster.local, vips: "
    "['/10.96.0.21'], ports: {80: 8080}}\n"
    "- {name: cart-v2, namespace: shop, hostname: cart-v2.shop.svc.cluster.local, vips: "
    "['/10.96.0.22'], ports: {80: 8080}}\n"
    "- {name: greeter, namespace: shop, hostname: greeter.shop.svc.cluster.local, vips: "
    "['/10.96.0.30'], ports: {9090: 9090}}\n"
    "- {name: greeter-v2, namespace: shop, hostname: greeter-v2.shop.svc.cluster.local, vips: "
    "['/10.96.0.31'], ports: {9090: 9090}}\n"
    "- {name: shadow, namespace: shop, hostname: shadow.shop.svc.cluster.local, vips: "
    "['/10.96.0.40'], ports: {80: 8080}}\n";

inline const char* const kCart = "shop/cart.shop.svc.cluster.local";
inline const char* const kGreeter = "shop/greeter.shop.svc.cluster.local";
inline const char* const kToCart = "parentRefs: [{group: '', kind: Service, name: cart}]";
inline const char* const kToGreeter = "parentRefs: [{group: '', kind: Service, name: greeter}]";

// One list item: an HTTPRoute (or GRPCRoute) named `name` in `ns` with a flow-style `spec`;
// `metadata_extra` is appended inside metadata (", creationTimestamp: ...").
inline std::string route(const std::string& kind, const std::string& name, const std::string& spec,
                         const std::string& metadata_extra = "", const std::string& ns = "shop") {
  return "- {apiVersion: gateway.networking.k8s.io/v1, kind: " + kind +
         ", metadata: {name: " + name + ", namespace: " + ns + metadata_extra + "}, spec: " + spec +
         "}\n";
}
inline std::string httpRoute(const std::string& name, const std::string& spec,
                             const std::string& metadata_extra = "",
                             const std::string& ns = "shop") {
  return route("HTTPRoute", name, spec, metadata_extra, ns);
}
inline std::string grpcRoute(const std::string& name, const std::string& spec,
                             const std::string& metadata_extra = "") {
  return route("GRPCRoute", name, spec, metadata_extra);
}
inline std::string created(const std::string& time) {
  return ", creationTimestamp: '" + time + "'";
}

// The services plus `http` routes and `grpc` routes (each a concatenation of route() items).
inline model::SnapshotPtr mesh(const std::string& http, const std::string& grpc = "") {
  std::string yaml = kServices;
  if (!http.empty()) yaml += "httpRoutes:\n" + http;
  if (!grpc.empty()) yaml += "grpcRoutes:\n" + grpc;
  config::LoadResult r = config::parseLocalConfig(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.problemsText() << "\n" << yaml;
  return r.snapshot;
}

inline RequestHead request(const std::string& method, const std::string& path, Headers headers = {},
                           const std::string& authority = "cart") {
  RequestHead head;
  head.method = method;
  head.path = path;
  head.authority = authority;
  head.headers = std::move(headers);
  return head;
}

inline RouteTarget toCart(uint16_t port = 80, const std::string& source_namespace = "shop") {
  return RouteTarget{kCart, port, source_namespace, false};
}

// Replays fixed values (modulo the bound), for tests that pick a particular backend.
class FixedRandom final : public RandomSource {
 public:
  explicit FixedRandom(std::vector<uint64_t> values) : values_(std::move(values)) {}
  uint64_t below(uint64_t bound) override {
    uint64_t v = values_.empty() ? 0 : values_[next_++ % values_.size()];
    return bound == 0 ? 0 : v % bound;
  }

 private:
  std::vector<uint64_t> values_;
  size_t next_ = 0;
};

// The "namespace/name" of the route that decided, or "" when none did.
inline std::string routeName(const RouteDecision& d) {
  return d.matched ? d.matched->route->key() : "";
}
inline std::string backendName(const RouteDecision& d) {
  return d.backend ? d.backend->service->namespace_name + "/" + d.backend->service->name : "";
}

}  // namespace nodemesh::waypoint::routing_test
