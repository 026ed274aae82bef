#pragma once

// Which failures of a request the waypoint tries again, how often and after how long
// (docs/waypoint.md, "Retries"): the rule's GEP-1731 `retry` (codes, attempts, backoff), else
// Istio's default for a waypoint: 2 retries on a 503 and on a connection failure or reset
// before any response (Envoy's connect-failure, refused-stream, reset). A rule's policy
// retries such failures too, as GEP-1731 lets an implementation do. Backoff as Envoy's: retry
// n waits a random time in [0, (2^n - 1) x base], at most 10 x base.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/route.h"
#include "waypoint/routing/random_source.h"

namespace nodemesh::waypoint {

struct RetryPolicy {
  static constexpr uint32_t kDefaultAttempts = 2;
  static constexpr std::chrono::milliseconds kDefaultBackoff{25};

  uint32_t attempts = kDefaultAttempts;  // retries after the first try
  std::vector<int> codes{503};           // response statuses retried
  std::chrono::milliseconds backoff = kDefaultBackoff;
  bool from_route = false;  // the rule's `retry` (else the default)

  // A rule's `retry`, or the default when it has none; its absent fields take the default's.
  static RetryPolicy of(const std::optional<model::RouteRetry>& retry);
  bool retriesStatus(int status) const;
  // gRPC statuses retried when a response ends with its headers (trailers-only): Istio's
  // retryOn `unavailable,cancelled`, in its default and in what it makes of an HTTPRoute's
  // `retry` alike.
  bool retriesGrpcStatus(uint32_t grpc_status) const;
  // How long to wait before retry number `n` (1 for the first).
  std::chrono::milliseconds delay(uint32_t n, RandomSource& random) const;

  // One line for explain: "2 retries on 503, gRPC UNAVAILABLE/CANCELLED and failures before
  // a response, backoff 25 ms (default)".
  std::string describe() const;
};

// RFC 9110 §9.2.2: a request with one of these methods may be sent again with the same effect.
bool idempotentMethod(std::string_view method);

}  // namespace nodemesh::waypoint
