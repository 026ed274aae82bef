#pragma once

// Log lines a peer can cause at will (refused streams, refused connections) are written at most
// `burst` per interval, as the kernel's printk_ratelimit does; the ones held back are counted and
// the next line written says how many. A flood must not become a flood of log lines: the
// counters have every event.

#include <chrono>
#include <cstdint>

namespace nodemesh::tunnel {

class RateLimitedLog {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kDefaultInterval{10};
  static constexpr uint32_t kDefaultBurst = 10;

  explicit RateLimitedLog(std::chrono::seconds interval = kDefaultInterval,
                          uint32_t burst = kDefaultBurst)
      : interval_(interval), burst_(burst) {}

  // Whether a line may be written at `now`; if so `held_back` is set to the lines not written
  // since the last one.
  bool admit(Clock::time_point now, uint64_t* held_back) {
    if (now >= window_end_) {
      window_end_ = now + interval_;
      written_ = 0;
    }
    if (written_ >= burst_) {
      ++held_back_;
      return false;
    }
    ++written_;
    *held_back = held_back_;
    held_back_ = 0;
    return true;
  }
  std::chrono::seconds interval() const { return interval_; }
  uint32_t burst() const { return burst_; }

 private:
  std::chrono::seconds interval_;
  uint32_t burst_;
  Clock::time_point window_end_{};
  uint32_t written_ = 0;
  uint64_t held_back_ = 0;
};

}  // namespace nodemesh::tunnel
