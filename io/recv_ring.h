#pragma once

// Multishot receive into a provided buffer ring (io_uring, Linux 5.19+): a worker registers
// one ring of fixed-size buffers; each receiving socket keeps one multishot recv armed, and
// the kernel picks a buffer for each chunk it completes. An idle connection holds no receive
// buffer at all, and a busy one at most kMaxChunks of them: when its consumer falls behind, the
// multishot recv is cancelled and re-armed once the chunks drained, so a slow reader slows the
// writer (TCP flow control) instead of filling the ring.

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "common/result.h"
#include "io/ring.h"

namespace nodemesh::io {

// Where a multishot receive's buffers come from: a group of equal buffers by id.
class ReceiveBuffers {
 public:
  virtual ~ReceiveBuffers() = default;
  virtual uint16_t group() const = 0;
  virtual uint8_t* buffer(uint16_t bid) = 0;
  // Gives a buffer back (to the kernel).
  virtual void recycle(uint16_t bid) = 0;
  // A completion handed us a buffer.
  virtual void taken() = 0;
  // Buffers the kernel can pick from now.
  virtual unsigned available() const = 0;
  // A receive found none to pick (ENOBUFS): offer more if there are.
  virtual void ranDry() {}
};

// ReceiveBuffers as an io_uring provided buffer ring. The kernel takes buffers from the ring
// in order, so a ring holding every buffer would cycle through all of them (and make all of
// their pages resident) under any load. The ring holds a window of them instead, refilled from
// the free buffers most recently used first: the memory touched follows the load. The window
// starts at kInitialWindow and doubles each time the kernel takes its last buffer or finds none.
class BufferRing final : public ReceiveBuffers {
 public:
  static Result<std::unique_ptr<BufferRing>> create(io_uring* ring, uint16_t group, unsigned count,
                                                    size_t buffer_size);
  ~BufferRing() override;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group() const override { return group_; }
  uint8_t* buffer(uint16_t bid) override { return base_ + static_cast<size_t>(bid) * size_; }
  void recycle(uint16_t bid) override;
  void taken() override;
  unsigned available() const override { return in_ring_; }
  void ranDry() override;

  static constexpr unsigned kInitialWindow = 16;
  unsigned window() const { return window_; }

 private:
  BufferRing() = default;
  // Moves free buffers into the ring until it holds the window's worth.
  void topUp();
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  size_t ring_bytes_ = 0;
  uint8_t* base_ = nullptr;
  unsigned count_ = 0;
  size_t size_ = 0;
  uint16_t group_ = 0;
  unsigned in_use_ = 0;          // handed to receivers
  unsigned in_ring_ = 0;         // the kernel can pick them
  unsigned window_ = 0;          // in_ring_'s target
  std::vector<uint16_t> spare_;  // free, not in the ring; the last one first
};

struct RecvChunk {
  uint16_t bid;
  uint32_t len;
  uint32_t off;
};

// The receive side of one socket.
struct Receiver {
  static constexpr size_t kMaxChunks = 4;  // per socket, in flight to the consumer

  int fd = -1;
  bool armed = false;                 // a multishot recv is active (its final CQE has not come)
  bool cancelling = false;            // ... and a cancel for it is on its way
  bool eof = false;                   // the peer half-closed (a 0-byte completion)
  bool starved = false;               // stopped by ENOBUFS: re-armed when buffers come back
  bool closed = false;                // the owner is going away: never armed again
  int error = 0;                      // errno of a failed receive
  OpTag* tag = nullptr;               // the owner's completion tag
  ReceiveBuffers* buffers = nullptr;  // where its buffers come from
  std::deque<RecvChunk> chunks;

  // The unconsumed bytes of the first chunk.
  std::span<const uint8_t> front() const {
    const RecvChunk& c = chunks.front();
    return {buffers->buffer(c.bid) + c.off, c.len - c.off};
  }
};

// Keeps each socket's multishot receive armed within its budget (Receiver::kMaxChunks) and the
// receivers that found the buffers exhausted waiting until some come back. One per worker.
class Receivers {
 public:
  // `exhausted`, when given, counts the receives that found the buffer ring empty (ENOBUFS).
  explicit Receivers(Ring& ring, std::atomic<uint64_t>* exhausted = nullptr)
      : ring_(ring), exhausted_(exhausted) {}

  // Arms rx's multishot receive unless it is armed, finished, over budget or starved.
  void arm(Receiver& rx);
  // A completion of rx's receive: queues the chunk, or records EOF, an error or starvation.
  void onCompletion(Receiver& rx, int res, unsigned flags);
  // The consumer took `n` bytes of the first chunk: recycles it when empty, re-arms.
  void consume(Receiver& rx, size_t n);
  // Stops receiving for good: a multishot receive still armed is cancelled, and what it still
  // delivers is dropped. The owner keeps the chunks it holds until release().
  void stop(Receiver& rx);
  // Gives back what rx holds; its owner is about to be freed (nothing in flight).
  void release(Receiver& rx);
  // Receivers stopped by ENOBUFS try again (buffers came back, or the timer's safety net).
  void rearmStarved();

 private:
  Ring& ring_;
  std::atomic<uint64_t>* exhausted_;
  std::vector<Receiver*> starved_;  // stopped by ENOBUFS, waiting for buffers
};

}  // namespace nodemesh::io
