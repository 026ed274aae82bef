#pragma once

// Envoy's response flags: why a request or connection did not end normally, as the short codes
// Envoy and Istio put in the response_flags metric label and the access log ("UH", "UF,URX",
// "-" for none). The codes, their meaning and their order when several are set are Envoy's
// (StreamInfo::ResponseFlag), so dashboards and alerts written for Envoy waypoints keep working.

#include <cstdint>
#include <initializer_list>
#include <string>

namespace nodemesh::waypoint {

// X(enumerator, short code), in Envoy's bit order, which is also the order of the joined text.
// Only the flags a waypoint can raise; Envoy's others (health checks, caches, overload) have no
// counterpart here.
#define NODEMESH_RESPONSE_FLAGS(X)                                                        \
  X(kNoHealthyUpstream, "UH")                   /* no healthy endpoint for the service */ \
  X(kUpstreamRequestTimeout, "UT")              /* the route timeout expired */           \
  X(kLocalReset, "LR")                          /* the waypoint reset the stream */       \
  X(kUpstreamRemoteReset, "UR")                 /* the upstream reset the stream */       \
  X(kUpstreamConnectionFailure, "UF")           /* connecting to the endpoint failed */   \
  X(kUpstreamConnectionTermination, "UC")       /* the upstream connection ended early */ \
  X(kUpstreamOverflow, "UO")                    /* circuit breaker: too many requests */  \
  X(kNoRouteFound, "NR")                        /* no route matched */                    \
  X(kDelayInjected, "DI")                       /* fault injection delayed the request */ \
  X(kFaultInjected, "FI")                       /* fault injection aborted the request */ \
  X(kRateLimited, "RL")                         /* a rate limit rejected the request */   \
  X(kUnauthorizedExternalService, "UAEX")       /* an external authorizer denied it */    \
  X(kRateLimitServiceError, "RLSE")             /* the rate limit service failed */       \
  X(kDownstreamConnectionTermination, "DC")     /* the client went away */                \
  X(kUpstreamRetryLimitExceeded, "URX")         /* retries exhausted */                   \
  X(kStreamIdleTimeout, "SI")                   /* the stream was idle too long */        \
  X(kInvalidRequestHeaders, "IH")               /* request headers failed validation */   \
  X(kDownstreamProtocolError, "DPE")            /* the client broke HTTP */               \
  X(kUpstreamMaxStreamDurationReached, "UMSDR") /* max stream duration */                 \
  X(kDurationTimeout, "DT")                     /* the request's max duration expired */  \
  X(kUpstreamProtocolError, "UPE")              /* the upstream broke HTTP */             \
  X(kNoClusterFound, "NC")                      /* the route's backend does not exist */  \
  X(kDownstreamRemoteReset, "DR")               /* the client reset the stream */

enum class ResponseFlag : uint32_t {
#define NODEMESH_RESPONSE_FLAG_ENUM(name, code) name,
  NODEMESH_RESPONSE_FLAGS(NODEMESH_RESPONSE_FLAG_ENUM)
#undef NODEMESH_RESPONSE_FLAG_ENUM
};

// A set of flags; empty means the request ended normally ("-").
class ResponseFlags {
 public:
  ResponseFlags() = default;
  ResponseFlags(std::initializer_list<ResponseFlag> flags) {
    for (ResponseFlag f : flags) set(f);
  }

  void set(ResponseFlag f) { bits_ |= bit(f); }
  bool has(ResponseFlag f) const { return (bits_ & bit(f)) != 0; }
  bool empty() const { return bits_ == 0; }
  bool operator==(const ResponseFlags&) const = default;

  // "-", "UH" or "UF,URX" (Envoy's order, comma-separated).
  std::string toString() const;
  // The short code of one flag ("UH").
  static const char* code(ResponseFlag f);

 private:
  static uint32_t bit(ResponseFlag f) { return uint32_t{1} << static_cast<uint32_t>(f); }
  uint32_t bits_ = 0;
};

}  // namespace nodemesh::waypoint
