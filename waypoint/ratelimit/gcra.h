#pragma once

// The Generic Cell Rate Algorithm (ITU-T I.371; the limiter of Linkerd's proxy, through the
// governor crate). Its whole state is one time, the theoretical arrival time (TAT) of the next
// request at the steady rate: a request passes when, after adding one emission interval, the TAT
// runs at most `tolerance` ahead of now. Unlike a token bucket there is no refill to schedule and
// nothing to count: the state of an idle client is simply a TAT in the past.

#include <chrono>
#include <cstdint>

namespace nodemesh::waypoint {

using RateClock = std::chrono::steady_clock;

struct GcraLimit {
  uint32_t requests_per_second = 0;
  uint32_t burst = 0;
  std::chrono::nanoseconds interval{0};   // T: one request's share of a second
  std::chrono::nanoseconds tolerance{0};  // T * burst: how far ahead of now the TAT may run

  // `rps` per second with a burst of one second's worth (governor's Quota::per_second, which
  // Linkerd uses): a client idle for a second may send `rps` requests at once. rps >= 1.
  static GcraLimit perSecond(uint32_t rps);
};

struct GcraResult {
  bool allowed = false;
  RateClock::time_point tat;  // allowed: the new TAT to store; else the old one, unchanged
  std::chrono::nanoseconds retry_after{0};  // denied: until a request would pass
  uint32_t remaining = 0;                   // requests that would pass right after this one
  std::chrono::nanoseconds reset{0};        // until the whole burst is available again
};

// One decision for a state whose TAT is `tat` (a new state: any time not after `now`). Pure: the
// caller stores `tat` when it commits the request.
GcraResult gcraCheck(RateClock::time_point tat, RateClock::time_point now, const GcraLimit& limit);

}  // namespace nodemesh::waypoint
