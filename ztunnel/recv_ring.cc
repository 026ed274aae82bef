#include "ztunnel/recv_ring.h"

#include <sys/mman.h>

#include <cstdlib>

namespace nodemesh::ztunnel::internal {

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
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(self->br_, self->buffer(static_cast<uint16_t>(i)),
                          static_cast<unsigned>(buffer_size), static_cast<uint16_t>(i), mask,
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(self->br_, static_cast<int>(count));
  return self;
}

void BufferRing::recycle(uint16_t bid) {
  --in_use_;
  io_uring_buf_ring_add(br_, buffer(bid), static_cast<unsigned>(size_), bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

BufferRing::~BufferRing() {
  if (br_) {
    (void)io_uring_unregister_buf_ring(ring_, group_);
    ::munmap(br_, ring_bytes_);
  }
  std::free(base_);
}

}  // namespace nodemesh::ztunnel::internal
