#pragma once

// The waypoint's local rate limits (docs/waypoint.md "Rate limiting"): the config's
// HTTPLocalRateLimitPolicy objects (model/rate_limit.h) compiled into GCRA limiters (gcra.h).
// A policy targets a Service (every request the waypoint serves for it: the service the client
// addressed) or one HTTPRoute/GRPCRoute (the requests that route's rules matched). A request passes
// only when every limit that applies passes, and only then is it counted against them:
//   - total: one limiter for all requests of the target;
//   - identity: one limiter per client identity (its SPIFFE ID), or, for a client named by an
//     override's clientRefs, the override's limit instead;
//   - header (ours): one limiter per value of the named header; requests without it are not
//     limited by this part.
// Lives on the waypoint's loop thread (not thread-safe). Time comes from an injected clock.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/rate_limit.h"
#include "model/snapshot.h"
#include "waypoint/ratelimit/gcra.h"
#include "waypoint/routing/http_head.h"

namespace nodemesh::waypoint {

// Which limit of a policy rejected a request (the `limit` label of the counter).
enum class RateLimitKind { kTotal, kIdentity, kOverride, kHeader };
inline constexpr size_t kRateLimitKinds = 4;
std::string_view rateLimitKindName(RateLimitKind kind);

// What one request is, as far as rate limits care. Non-owning.
struct RateLimitRequest {
  std::string_view service;  // the addressed service's "namespace/name"; empty: a pod
  // The route whose rule matched, if any: kind "HTTPRoute" or "GRPCRoute" and "namespace/name".
  std::string_view route_kind;
  std::string_view route;
  std::string_view principal;  // the client's SPIFFE ID; empty: no identity (one shared limit)
  const Headers* headers = nullptr;
};

struct RateLimitVerdict {
  bool limited = false;
  // Limited: the limit that decided (the one that frees up last, when several reject).
  std::string policy;  // "namespace/name"
  RateLimitKind kind = RateLimitKind::kTotal;
  uint32_t requests_per_second = 0;
  std::chrono::nanoseconds retry_after{0};
  std::chrono::nanoseconds reset{0};

  // The 429's fields: retry-after (RFC 9110 §10.2.3, whole seconds rounded up) and the IETF
  // RateLimit fields of draft-ietf-httpapi-ratelimit-headers-08.
  Headers responseHeaders() const;
};

// One counter per (policy, limit kind); kept across config versions so it only grows.
struct RateLimitCounter {
  std::string policy;
  RateLimitKind kind = RateLimitKind::kTotal;
  uint64_t rejected = 0;
};

class RateLimiter {
 public:
  using ClockFn = std::function<RateClock::time_point()>;
  // Per-key states (identities, header values) kept per policy before new keys share one
  // state: a bound on memory that a client minting identities or header values cannot pass.
  static constexpr size_t kMaxKeys = 65536;

  explicit RateLimiter(ClockFn clock = [] { return RateClock::now(); });

  // The policies of a new config. A policy whose spec did not change keeps its state, so a
  // reload does not hand out a fresh burst.
  void setSnapshot(const model::SnapshotPtr& snapshot);

  // Decides, counts and (when it passes) charges the request to every limit that applies.
  RateLimitVerdict check(const RateLimitRequest& request);

  // Forgets per-key states that are back to full (a TAT in the past is the same as none).
  void prune();

  std::vector<RateLimitCounter> counters() const;
  // Keys held now, all policies (for tests and /stats).
  size_t keys() const;

 private:
  struct Compiled {
    model::RateLimitPolicy spec;
    std::optional<GcraLimit> total;
    std::optional<GcraLimit> identity;
    std::optional<GcraLimit> header;
    std::vector<GcraLimit> overrides;
    std::map<std::string, size_t, std::less<>> override_of;  // "ns/sa" -> index in overrides
    RateClock::time_point total_tat{};
    std::unordered_map<std::string, RateClock::time_point> identity_tats;
    std::unordered_map<std::string, RateClock::time_point> header_tats;
  };

  // The state for `key` in `tats`, created when new (or the shared overflow state when full).
  RateClock::time_point& stateFor(std::unordered_map<std::string, RateClock::time_point>& tats,
                                  std::string_view key, RateClock::time_point now);

  ClockFn clock_;
  std::vector<std::shared_ptr<Compiled>> policies_;
  // "Service ns/name", "HTTPRoute ns/name", "GRPCRoute ns/name" -> index in policies_.
  std::map<std::string, size_t, std::less<>> by_target_;
  std::map<std::string, std::array<uint64_t, kRateLimitKinds>, std::less<>> rejected_;
};

}  // namespace nodemesh::waypoint
