#include "waypoint/routing/retry_policy.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace nodemesh::waypoint {

RetryPolicy RetryPolicy::of(const std::optional<model::RouteRetry>& retry) {
  RetryPolicy p;
  if (!retry) return p;
  p.from_route = true;
  p.codes = retry->codes;  // GEP-1731: no codes, no status is retried
  if (retry->attempts) p.attempts = *retry->attempts;
  if (retry->backoff) p.backoff = *retry->backoff;
  return p;
}

bool RetryPolicy::retriesStatus(int status) const {
  return std::find(codes.begin(), codes.end(), status) != codes.end();
}

bool RetryPolicy::retriesGrpcStatus(uint32_t grpc_status) const {
  // gRPC's status codes (grpc/doc/statuscodes.md); routing knows no gRPC codec.
  constexpr uint32_t kCancelled = 1;
  constexpr uint32_t kUnavailable = 14;
  return grpc_status == kCancelled || grpc_status == kUnavailable;
}

std::chrono::milliseconds RetryPolicy::delay(uint32_t n, RandomSource& random) const {
  if (backoff.count() <= 0 || n == 0) return std::chrono::milliseconds(0);
  // Envoy's fully jittered exponential backoff, capped at 10x the base interval.
  const uint64_t base = static_cast<uint64_t>(backoff.count());
  const uint64_t cap = base * 10;
  const uint32_t shift = std::min<uint32_t>(n, 20);
  const uint64_t ceiling = std::min(cap, ((uint64_t{1} << shift) - 1) * base);
  return std::chrono::milliseconds(random.below(ceiling + 1));
}

std::string RetryPolicy::describe() const {
  if (attempts == 0) return "none (attempts: 0)";
  std::string on = codes.empty() ? "" : fmt::format("{}, ", fmt::join(codes, ", "));
  return fmt::format(
      "{} retr{} on {}gRPC UNAVAILABLE/CANCELLED and failures before a response, backoff {} ms "
      "({})",
      attempts, attempts == 1 ? "y" : "ies", on, backoff.count(),
      from_route ? "the rule's" : "default");
}

bool idempotentMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

}  // namespace nodemesh::waypoint
