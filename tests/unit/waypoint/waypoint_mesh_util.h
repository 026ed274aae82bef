#pragma once

// Shared by the waypoint policy and admin tests: a small mesh in the local config format with a
// waypoint workload (waypoint-0) that the `cart` service names, loaded through the config parser
// so the tests see what the waypoint sees.

#include <gtest/gtest.h>

#include <string>

#include "config/local/local_config.h"

namespace nodemesh::waypoint::mesh_test {

inline const char* const kWaypointUid = "cluster1//v1/Pod/shop/waypoint-0";
inline const char* const kFrontend = "spiffe://cluster.local/ns/shop/sa/frontend";
inline const char* const kReviews = "spiffe://cluster.local/ns/shop/sa/reviews";

// Workloads: frontend (10.244.1.10), reviews (10.244.1.11), cart-v1 (10.244.2.20, listing
// `cart_v1_policies`), cart-v2 (10.244.1.21) and waypoint-0 (10.244.2.9). Services: cart (VIP
// 10.96.0.20, 80 -> 8080, through the waypoint), cart-v1, cart-v2, orders (no waypoint).
// `policies` and `routes` are appended as the `policies:` and `httpRoutes:` lists.
inline std::string meshYaml(const std::string& policies = "", const std::string& routes = "",
                            const std::string& cart_v1_policies = "") {
  std::string yaml =
      "workloads:\n"
      "- {uid: cluster1//v1/Pod/shop/frontend-0, name: frontend-0, namespace: shop,"
      " serviceAccount: frontend, workloadIps: ['10.244.1.10'], protocol: HBONE, node: node1}\n"
      "- {uid: cluster1//v1/Pod/shop/reviews-0, name: reviews-0, namespace: shop,"
      " serviceAccount: reviews, workloadIps: ['10.244.1.11'], protocol: HBONE, node: node1}\n"
      "- {uid: cluster1//v1/Pod/shop/cart-v1-0, name: cart-v1-0, namespace: shop,"
      " serviceAccount: cart, workloadIps: ['10.244.2.20'], protocol: HBONE, node: node2,"
      " services: {'shop/cart.shop.svc.cluster.local': {80: 8080},"
      " 'shop/cart-v1.shop.svc.cluster.local': {80: 8080}}";
  if (!cart_v1_policies.empty()) yaml += ", authorizationPolicies: [" + cart_v1_policies + "]";
  yaml +=
      "}\n"
      "- {uid: cluster1//v1/Pod/shop/cart-v2-0, name: cart-v2-0, namespace: shop,"
      " serviceAccount: cart, workloadIps: ['10.244.1.21'], protocol: HBONE, node: node1,"
      " services: {'shop/cart.shop.svc.cluster.local': {80: 8080},"
      " 'shop/cart-v2.shop.svc.cluster.local': {80: 8080}}}\n"
      "- {uid: cluster1//v1/Pod/shop/waypoint-0, name: waypoint-0, namespace: shop,"
      " serviceAccount: waypoint, workloadIps: ['10.244.2.9'], protocol: TCP, node: node2,"
      " services: {'shop/waypoint.shop.svc.cluster.local': {15008: 15008}}}\n"
      "services:\n"
      "- {name: waypoint, namespace: shop, hostname: waypoint.shop.svc.cluster.local,"
      " vips: ['/10.96.0.9'], ports: {15008: 15008}}\n"
      "- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local,"
      " vips: ['/10.96.0.20'], ports: {80: 8080},"
      " waypoint: {destination: 'shop/waypoint.shop.svc.cluster.local', hboneMtlsPort: 15008}}\n"
      "- {name: cart-v1, namespace: shop, hostname: cart-v1.shop.svc.cluster.local,"
      " vips: ['/10.96.0.21'], ports: {80: 8080}}\n"
      "- {name: cart-v2, namespace: shop, hostname: cart-v2.shop.svc.cluster.local,"
      " vips: ['/10.96.0.22'], ports: {80: 8080}}\n"
      "- {name: orders, namespace: shop, hostname: orders.shop.svc.cluster.local,"
      " vips: ['/10.96.0.30'], ports: {80: 8080}}\n";
  if (!policies.empty()) yaml += "policies:\n" + policies;
  if (!routes.empty()) yaml += "httpRoutes:\n" + routes;
  return yaml;
}

inline model::SnapshotPtr mesh(const std::string& policies = "", const std::string& routes = "",
                               const std::string& cart_v1_policies = "") {
  const std::string yaml = meshYaml(policies, routes, cart_v1_policies);
  config::LoadResult r = config::parseLocalConfig(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.problemsText() << "\n" << yaml;
  return r.snapshot;
}

}  // namespace nodemesh::waypoint::mesh_test
