#pragma once

// Adaptive busy polling (TunnelOptions::busy_poll_adaptive): a worker polls before it sleeps
// only while polling pays. Polls that find work (hits) keep it polling; after kMissesToBackOff
// polls in a row that ran out (misses) it skips polling for kFirstSkip wake-ups, then probes
// once: a probe that misses doubles the skip (up to kMaxSkip), one that hits ends it. Dense
// traffic (each answer back within the budget, as in a request-response exchange) keeps the
// worker polling and saves its wake-ups; sparse traffic and an idle worker cost one probe every
// kMaxSkip wake-ups.

#include <algorithm>
#include <cstdint>

namespace nodemesh::tunnel {

class PollBackoff {
 public:
  static constexpr uint32_t kMissesToBackOff = 4;
  static constexpr uint32_t kFirstSkip = 8;
  static constexpr uint32_t kMaxSkip = 1024;

  explicit PollBackoff(bool adaptive) : adaptive_(adaptive) {}

  // Whether to poll before this wait (counts the wait when not).
  bool shouldPoll() {
    if (skip_left_ == 0) return true;
    --skip_left_;
    return false;
  }
  void hit() {
    misses_ = 0;
    skip_ = 0;
    skip_left_ = 0;
  }
  void miss() {
    if (!adaptive_) return;
    if (skip_ > 0) {  // a probe after a skip
      skip_ = std::min(skip_ * 2, kMaxSkip);
    } else if (++misses_ < kMissesToBackOff) {
      return;
    } else {
      misses_ = 0;
      skip_ = kFirstSkip;
    }
    skip_left_ = skip_;
  }

 private:
  bool adaptive_;
  uint32_t misses_ = 0;     // in a row, while polling
  uint32_t skip_ = 0;       // the current skip; 0 while polling
  uint32_t skip_left_ = 0;  // waits left to skip
};

}  // namespace nodemesh::tunnel
