#pragma once

// A small mesh and a finished request through the waypoint, shared by the waypoint telemetry
// tests: frontend-7d9f (shop) calls the cart service, served by cart-v1-5c2a.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "common/ip_address.h"
#include "model/service.h"
#include "model/workload.h"
#include "waypoint/telemetry/random_bytes.h"
#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint::testing {

inline constexpr const char* kFrontendId = "spiffe://cluster.local/ns/shop/sa/frontend";
inline constexpr const char* kCartId = "spiffe://cluster.local/ns/shop/sa/cart";

struct Mesh {
  model::Workload frontend;
  model::Workload cart_v1;
  model::Service cart;

  Mesh() {
    frontend.name = "frontend-7d9f";
    frontend.namespace_name = "shop";
    frontend.workload_name = "frontend";
    frontend.canonical_name = "frontend";
    frontend.canonical_revision = "v1";
    frontend.cluster_id = "cluster1";
    cart_v1.name = "cart-v1-5c2a";
    cart_v1.namespace_name = "shop";
    cart_v1.workload_name = "cart-v1";
    cart_v1.canonical_name = "cart";
    cart_v1.canonical_revision = "v1";
    cart_v1.cluster_id = "cluster1";
    cart.name = "cart";
    cart.namespace_name = "shop";
    cart.hostname = "cart.shop.svc.cluster.local";
  }
};

inline SocketAddress addr(const char* text) {
  return SocketAddress::parse(text).value();
}

// GET /cart from frontend to the cart service, 200 from cart-v1 after 12.5 ms.
inline RequestRecord cartRequest(const Mesh& mesh) {
  RequestRecord r;
  r.source_workload = &mesh.frontend;
  r.source_principal = kFrontendId;
  r.source_address = addr("10.244.1.10:40290");
  r.mutual_tls = true;
  r.destination_service = &mesh.cart;
  r.destination_workload = &mesh.cart_v1;
  r.destination_principal = kCartId;
  r.upstream_host = addr("10.244.2.20:8080");
  r.upstream_attempts = 2;
  r.route_name = "shop/cart";
  r.method = "GET";
  r.authority = "cart.shop.svc.cluster.local:80";
  r.path = "/cart?id=7";
  r.http_version = HttpVersion::kHttp11;
  r.user_agent = "curl/8.5.0";
  r.request_id = "5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f";
  r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  r.span_id = "00f067aa0ba902b7";
  r.response_code = 200;
  r.request_bytes = 0;
  r.response_bytes = 512;
  r.start_time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795000000123));
  r.duration = std::chrono::microseconds(12500);
  return r;
}

// Hands out the given bytes in order, then zeros: exact ids in tests.
class FixedRandom final : public RandomBytes {
 public:
  explicit FixedRandom(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  void fill(std::span<uint8_t> out) override {
    for (uint8_t& b : out) b = next_ < bytes_.size() ? bytes_[next_++] : 0;
  }

 private:
  std::vector<uint8_t> bytes_;
  size_t next_ = 0;
};

// 0x01, 0x02, ... 0xff, 0x01, ...: never an all-zero id.
inline std::vector<uint8_t> countingBytes(size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(i % 255 + 1);
  return out;
}

}  // namespace nodemesh::waypoint::testing
