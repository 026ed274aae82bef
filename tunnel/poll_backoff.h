#pragma once

// Adaptive busy polling (TunnelOptions::busy_poll_adaptive): a worker polls before it sleeps
// only while polling pays, that is while nearly every poll finds work (a hit) before its budget
// runs out. A poll that runs out (a miss) costs the whole budget in CPU; a hit saves a sleep and
// a wake-up.
//
// - While polling, the last kWindow polls are kept. Once more than kMissesAllowed of them missed,
//   the worker pauses: it skips polling for `pause` waits, then probes once.
// - A probe that misses doubles the pause (up to kMaxPause). One that hits resumes polling, but
//   the pause it came from is remembered: if polling fails again before kPollsToForget polls in
//   a row went well, the next pause is twice as long.
//
// So request-response traffic whose answers come back within the budget (each wait a hit) keeps
// the worker polling. Traffic where every other wait is long (a server answering one request a
// millisecond: the wait for the application's answer hits, the wait for the next request
// misses) settles at one probe per kMaxPause waits instead of a miss per request, and so do
// sparse traffic and an idle worker.

#include <algorithm>
#include <bit>
#include <cstdint>

namespace nodemesh::tunnel {

class PollBackoff {
 public:
  static constexpr uint32_t kWindow = 8;          // polls remembered
  static constexpr uint32_t kMissesAllowed = 2;   // in the window; one more pauses polling
  static constexpr uint32_t kFirstPause = 8;      // waits
  static constexpr uint32_t kMaxPause = 1024;     // waits
  static constexpr uint32_t kPollsToForget = 64;  // polls within the limit that reset the pause

  explicit PollBackoff(bool adaptive) : adaptive_(adaptive) {}

  // Whether to poll before this wait (counts the wait when not).
  bool shouldPoll() {
    if (skip_left_ == 0) return true;
    --skip_left_;
    return false;
  }
  void hit() { record(false); }
  void miss() { record(true); }

 private:
  void record(bool missed) {
    if (!adaptive_) return;
    if (probing_) {  // the one poll after a pause
      probing_ = false;
      if (missed) return pauseFor(std::min(pause_ * 2, kMaxPause));
      misses_ = 0;  // polling again, with a clean window; pause_ is remembered
      polls_ok_ = 0;
      return;
    }
    misses_ = ((misses_ << 1) | (missed ? 1U : 0U)) & ((1U << kWindow) - 1);
    if (static_cast<uint32_t>(std::popcount(misses_)) > kMissesAllowed) {
      return pauseFor(pause_ == 0 ? kFirstPause : std::min(pause_ * 2, kMaxPause));
    }
    if (pause_ != 0 && ++polls_ok_ >= kPollsToForget) pause_ = 0;
  }
  void pauseFor(uint32_t waits) {
    pause_ = waits;
    skip_left_ = waits;
    probing_ = true;
    misses_ = 0;
    polls_ok_ = 0;
  }

  bool adaptive_;
  uint32_t misses_ = 0;     // the window: bit i set if the i-th last poll missed
  uint32_t pause_ = 0;      // the last pause; 0 when polling has gone well long enough
  uint32_t skip_left_ = 0;  // waits left to skip
  uint32_t polls_ok_ = 0;   // polls since polling resumed, while the window stays under the limit
  bool probing_ = false;    // the next poll is a probe after a pause
};

}  // namespace nodemesh::tunnel
