#include "waypoint/ratelimit/gcra.h"

#include <algorithm>

namespace nodemesh::waypoint {

GcraLimit GcraLimit::perSecond(uint32_t rps) {
  GcraLimit l;
  l.requests_per_second = std::max<uint32_t>(rps, 1);
  l.burst = l.requests_per_second;
  l.interval = std::chrono::nanoseconds(std::chrono::seconds(1)) / l.requests_per_second;
  l.tolerance = l.interval * l.burst;
  return l;
}

GcraResult gcraCheck(RateClock::time_point tat, RateClock::time_point now, const GcraLimit& limit) {
  GcraResult r;
  const RateClock::time_point base = std::max(tat, now);
  const RateClock::time_point next = base + limit.interval;
  if (next - now <= limit.tolerance) {
    r.allowed = true;
    r.tat = next;
    r.remaining = static_cast<uint32_t>((limit.tolerance - (next - now)) / limit.interval);
    r.reset = next - now;
    return r;
  }
  r.tat = tat;
  r.retry_after = next - limit.tolerance - now;
  r.reset = base - now;
  return r;
}

}  // namespace nodemesh::waypoint
