#include "io/recv_ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace nodemesh::io {

Result<std::unique_ptr<BufferRing>> BufferRing::create(io_uring* ring, uint16_t group,
                                                       unsigned count, size_t buffer_size) {
  // The ring's entry count must be a power of two (io_uring_register_buf_ring).
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) {
    return Error::invalid("buffer ring size must be a power of two up to 32768");
  }
  std::unique_ptr<BufferRing> self(new BufferRing());
  self->ring_ = ring;
  self->count_ = count;
  self->size_ = buffer_size;
  self->group_ = group;
  self->ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, self->ring_bytes_, PROT_READ | PROT_WRITE,
                     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return Error::fromErrno("mmap buffer ring");
  self->br_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(self->br_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(self->br_);
  reg.ring_entries = count;
  reg.bgid = group;
  if (int err = io_uring_register_buf_ring(ring, &reg, 0); err < 0) {
    ::munmap(self->br_, self->ring_bytes_);
    self->br_ = nullptr;
    return Error::fromErrno("io_uring_register_buf_ring", -err);
  }
  void* data = nullptr;
  if (::posix_memalign(&data, 4096, count * buffer_size) != 0) {
    return Error{ENOMEM, "allocating receive buffers"};
  }
  self->base_ = static_cast<uint8_t*>(data);
  // The lowest ids go into the ring first.
  for (unsigned i = count; i > 0; --i) self->spare_.push_back(static_cast<uint16_t>(i - 1));
  self->window_ = std::min(count, kInitialWindow);
  self->topUp();
  return self;
}

void BufferRing::topUp() {
  int added = 0;
  const int mask = io_uring_buf_ring_mask(count_);
  while (in_ring_ < window_ && !spare_.empty()) {
    const uint16_t bid = spare_.back();
    spare_.pop_back();
    io_uring_buf_ring_add(br_, buffer(bid), static_cast<unsigned>(size_), bid, mask, added);
    ++added;
    ++in_ring_;
  }
  if (added > 0) io_uring_buf_ring_advance(br_, added);
}

void BufferRing::taken() {
  ++in_use_;
  if (in_ring_ > 0) --in_ring_;
  // The kernel took the last one: the next receive would find none.
  if (in_ring_ == 0) ranDry();
}

void BufferRing::ranDry() {
  window_ = std::min(count_, window_ * 2);
  topUp();
}

void BufferRing::recycle(uint16_t bid) {
  --in_use_;
  spare_.push_back(bid);
  topUp();
}

BufferRing::~BufferRing() {
  if (br_) {
    (void)io_uring_unregister_buf_ring(ring_, group_);
    ::munmap(br_, ring_bytes_);
  }
  std::free(base_);
}

// ---- Receivers ----

void Receivers::arm(Receiver& rx) {
  if (rx.armed || rx.closed || rx.eof || rx.error || rx.starved) return;
  if (rx.chunks.size() >= Receiver::kMaxChunks) return;  // re-armed by consume()
  ring_.recvMultishot(rx.fd, rx.buffers->group(), rx.tag);
  rx.armed = true;
  rx.cancelling = false;
}

void Receivers::onCompletion(Receiver& rx, int res, unsigned flags) {
  if (!(flags & IORING_CQE_F_MORE)) rx.armed = false;
  if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
    auto bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    rx.buffers->taken();
    if (rx.closed) {
      rx.buffers->recycle(bid);
      return;
    }
    rx.chunks.push_back(RecvChunk{bid, static_cast<uint32_t>(res), 0});
    if (rx.armed && !rx.cancelling && rx.chunks.size() >= Receiver::kMaxChunks) {
      // The consumer is behind: stop taking buffers until it catches up.
      ring_.cancel(rx.tag);
      rx.cancelling = true;
    }
    return;
  }
  if (res == 0) {
    rx.eof = true;
  } else if (res == -ENOBUFS) {
    if (exhausted_ != nullptr) exhausted_->fetch_add(1, std::memory_order_relaxed);
    rx.buffers->ranDry();
    // With buffers to pick again (a larger window, or some came back between the kernel's
    // attempt and this completion), re-armed below; otherwise wait for some (consume).
    if (rx.buffers->available() == 0 && !rx.closed && !rx.starved) {
      rx.starved = true;
      starved_.push_back(&rx);
    }
  } else if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    rx.error = -res;
  }
  if (!rx.armed && !rx.closed) arm(rx);  // after a cancel or EINTR, when there is room
}

void Receivers::consume(Receiver& rx, size_t n) {
  RecvChunk& c = rx.chunks.front();
  c.off += static_cast<uint32_t>(n);
  if (c.off < c.len) return;
  rx.buffers->recycle(c.bid);
  rx.chunks.pop_front();
  rearmStarved();
  if (rx.chunks.size() <= Receiver::kMaxChunks / 2) arm(rx);
}

void Receivers::rearmStarved() {
  std::vector<Receiver*> waiting;
  waiting.swap(starved_);
  for (Receiver* r : waiting) {
    r->starved = false;
    arm(*r);
  }
}

void Receivers::stop(Receiver& rx) {
  rx.closed = true;
  if (rx.armed && !rx.cancelling) {
    ring_.cancel(rx.tag);
    rx.cancelling = true;
  }
}

void Receivers::release(Receiver& rx) {
  rx.closed = true;
  for (const RecvChunk& c : rx.chunks) rx.buffers->recycle(c.bid);
  rx.chunks.clear();
  if (rx.starved) {
    starved_.erase(std::remove(starved_.begin(), starved_.end(), &rx), starved_.end());
    rx.starved = false;
  }
}

}  // namespace nodemesh::io
