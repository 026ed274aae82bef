#pragma once

// Multishot receive into a provided buffer ring (io_uring, Linux 5.19+): a worker registers
// one ring of fixed-size buffers; each receiving socket keeps one multishot recv armed, and
// the kernel picks a buffer for each chunk it completes. An idle connection holds no receive
// buffer at all, and a busy one at most kMaxChunks of them: when its consumer falls behind, the
// multishot recv is cancelled and re-armed once the chunks drained, so a slow reader slows the
// writer (TCP flow control) instead of filling the ring.

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>

#include "common/result.h"

namespace nodemesh::ztunnel::internal {

class BufferRing {
 public:
  static Result<std::unique_ptr<BufferRing>> create(io_uring* ring, uint16_t group, unsigned count,
                                                    size_t buffer_size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group() const { return group_; }
  uint8_t* buffer(uint16_t bid) { return base_ + static_cast<size_t>(bid) * size_; }
  // Gives a buffer back to the kernel.
  void recycle(uint16_t bid);
  // A completion handed us a buffer.
  void taken() { ++in_use_; }
  // Buffers the kernel can pick from now.
  unsigned available() const { return count_ - in_use_; }

 private:
  BufferRing() = default;
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  size_t ring_bytes_ = 0;
  uint8_t* base_ = nullptr;
  unsigned count_ = 0;
  size_t size_ = 0;
  uint16_t group_ = 0;
  unsigned in_use_ = 0;
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
  bool armed = false;          // a multishot recv is active (its final CQE has not come)
  bool cancelling = false;     // ... and a cancel for it is on its way
  bool eof = false;            // the peer half-closed (a 0-byte completion)
  bool starved = false;        // stopped by ENOBUFS: re-armed when buffers come back
  bool closed = false;         // the owner is going away: never armed again
  int error = 0;               // errno of a failed receive
  void* user_data = nullptr;   // the owner's completion tag
  BufferRing* ring = nullptr;  // where its buffers come from
  std::deque<RecvChunk> chunks;

  // The unconsumed bytes of the first chunk.
  std::span<const uint8_t> front() const {
    const RecvChunk& c = chunks.front();
    return {ring->buffer(c.bid) + c.off, c.len - c.off};
  }
};

}  // namespace nodemesh::ztunnel::internal
