#pragma once

// Ring on io_uring: one per worker thread, created and used by that thread only.

#include <liburing.h>

#include <chrono>
#include <memory>

#include "common/result.h"
#include "io/recv_ring.h"
#include "io/ring.h"

namespace nodemesh::io {

class UringRing final : public Ring {
 public:
  // On the thread that will submit: with IORING_SETUP_SINGLE_ISSUER only the creating task may.
  // `busy_poll` > 0 asks for IORING_SETUP_TASKRUN_FLAG (see pollBeforeWait).
  static Result<std::unique_ptr<UringRing>> create(unsigned entries,
                                                   std::chrono::milliseconds connect_timeout,
                                                   bool busy_poll);
  ~UringRing() override;
  UringRing(const UringRing&) = delete;
  UringRing& operator=(const UringRing&) = delete;

  // A provided buffer ring registered with this ring (multishot receives pick from it).
  Result<std::unique_ptr<BufferRing>> createBufferRing(uint16_t group, unsigned count,
                                                       size_t buffer_size);

  // Submits what is queued, waits for at least one completion and hands every completion that
  // is ready to its handler. Returns how many there were.
  unsigned submitAndDispatch();

  // Busy polling: submits, then polls until a completion or pending completion work shows up
  // or `budget` runs out, yielding the CPU between looks so that the pod's own processes on
  // the agent's CPU still run. kReady: work was waiting already (no poll); kFound: the poll
  // found work within the budget, a sleep and wake-up saved; kExpired: it found none in time
  // (also when a yield gave the CPU away past the budget), the worker then waits.
  enum class PollResult { kReady, kFound, kExpired };
  PollResult pollBeforeWait(std::chrono::microseconds budget);

  void acceptMultishot(int fd, OpTag* tag) override;
  void recvMultishot(int fd, uint16_t buffer_group, OpTag* tag) override;
  void send(int fd, std::span<const uint8_t> data, OpTag* tag) override;
  void sendmsg(int fd, const msghdr* msg, OpTag* tag) override;
  void shutdownWrite(int fd, OpTag* tag) override;
  void connect(int fd, const sockaddr_storage& addr, socklen_t len, OpTag* tag) override;
  void timeout(const __kernel_timespec& after, OpTag* tag) override;
  void removeTimeout(OpTag* tag) override;
  void poll(int fd, unsigned events, OpTag* tag) override;
  void read(int fd, void* buf, size_t len, OpTag* tag) override;
  void cancel(OpTag* tag) override;
  void cancelFd(int fd) override;

 private:
  UringRing() = default;
  io_uring_sqe* sqe();

  io_uring ring_{};
  bool ready_ = false;
  __kernel_timespec connect_timeout_{};
};

}  // namespace nodemesh::io
