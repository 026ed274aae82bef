#pragma once

// Byte FIFOs for the HTTP/2 codec.
//
// ByteQueue: a ring buffer, append at the back, read from the front. Steady streaming costs one
// memcpy in and one out per byte and no allocation once the buffer has grown to its working
// size. (It was a vector compacted when full: with a stream's queue kept near its bound, each
// compaction moved nearly the whole queue to make room for one more chunk.)
//
// OutputQueue: fixed-capacity blocks that never reallocate, so a view of the front block stays
// valid while more bytes are appended behind it (a write to the transport may still be in
// flight when the next frames are produced).

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace nodemesh::hbone {

class ByteQueue {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }

  void append(std::span<const uint8_t> data) {
    if (data.empty()) {
      return;
    }
    if (data.size() > capacity_ - size_) {
      grow(size_ + data.size());
    }
    // The free space starts at the tail and may wrap around the end of the buffer.
    const size_t tail = wrap(head_ + size_);
    const size_t first = std::min(data.size(), capacity_ - tail);
    std::memcpy(buf_.get() + tail, data.data(), first);
    if (first < data.size()) {
      std::memcpy(buf_.get(), data.data() + first, data.size() - first);
    }
    size_ += data.size();
  }

  // Copies up to dst.size() bytes out of the front; returns how many.
  size_t read(std::span<uint8_t> dst) {
    const size_t n = std::min(dst.size(), size_);
    if (n == 0) {
      return 0;
    }
    const size_t first = std::min(n, capacity_ - head_);
    std::memcpy(dst.data(), buf_.get() + head_, first);
    if (first < n) {
      std::memcpy(dst.data() + first, buf_.get(), n - first);
    }
    drop(n);
    return n;
  }

  // Discards up to n bytes from the front.
  void drop(size_t n) {
    n = std::min(n, size_);
    head_ = wrap(head_ + n);
    size_ -= n;
    if (size_ == 0) {
      head_ = 0;  // the next append starts at the front: one copy where a wrap would need two
    }
  }

  void clear() {
    head_ = 0;
    size_ = 0;
  }

 private:
  size_t wrap(size_t i) const { return i >= capacity_ ? i - capacity_ : i; }

  // At least `needed` bytes of capacity (doubling, as a vector grows), the queued bytes moved
  // to the front of the new buffer.
  void grow(size_t needed) {
    const size_t capacity = std::max(needed, capacity_ * 2);
    auto bigger = std::make_unique_for_overwrite<uint8_t[]>(capacity);
    const size_t first = std::min(size_, capacity_ - head_);
    if (first > 0) {
      std::memcpy(bigger.get(), buf_.get() + head_, first);
    }
    if (first < size_) {
      std::memcpy(bigger.get() + first, buf_.get(), size_ - first);
    }
    buf_ = std::move(bigger);
    capacity_ = capacity;
    head_ = 0;
  }

  std::unique_ptr<uint8_t[]> buf_;  // NOLINT(cppcoreguidelines-avoid-c-arrays): raw storage
  size_t capacity_ = 0;
  size_t head_ = 0;  // the oldest queued byte
  size_t size_ = 0;
};

// Emptied blocks of one size, kept for reuse by the OutputQueues of one thread (a tunnel
// worker's streams): a queue that runs empty gives its blocks back here instead of holding
// them while it idles, and the next burst of any queue takes them without malloc. Freeing and
// allocating 64 KiB blocks for every burst instead cost half of a stream's throughput: glibc
// trims the freed top of the arena and the next block faults its pages in again.
class BlockPool {
 public:
  BlockPool(size_t block_bytes, size_t max_free) : block_bytes_(block_bytes), max_free_(max_free) {}

  size_t blockBytes() const { return block_bytes_; }
  size_t freeBlocks() const { return free_.size(); }

  // An empty block with block_bytes() of capacity.
  std::vector<uint8_t> take() {
    if (!free_.empty()) {
      std::vector<uint8_t> block = std::move(free_.back());
      free_.pop_back();
      return block;
    }
    std::vector<uint8_t> block;
    block.reserve(block_bytes_);
    return block;
  }
  // Keeps `block` for reuse, unless max_free blocks are kept already (then it is freed).
  void give(std::vector<uint8_t>&& block) {
    if (free_.size() < max_free_ && block.capacity() >= block_bytes_) {
      block.clear();
      free_.push_back(std::move(block));
    }
    std::vector<uint8_t>().swap(block);
  }

 private:
  size_t block_bytes_;
  size_t max_free_;
  std::vector<std::vector<uint8_t>> free_;
};

class OutputQueue {
 public:
  explicit OutputQueue(size_t block_bytes) : block_bytes_(block_bytes) {}
  // Blocks come from `pool` and go back to it as soon as they are written (no spare is kept),
  // and when the queue is destroyed; `pool` must outlive the queue.
  explicit OutputQueue(BlockPool& pool) : block_bytes_(pool.blockBytes()), pool_(&pool) {}
  ~OutputQueue() {
    if (pool_ == nullptr) return;
    for (size_t i = first_; i < blocks_.size(); ++i) pool_->give(std::move(blocks_[i]));
  }
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;
  OutputQueue(OutputQueue&&) = delete;
  OutputQueue& operator=(OutputQueue&&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The queued bytes as at most `max` iovecs, oldest first (the first from the front block's
  // unwritten part); each stays valid until drop() releases its block. Returns the count.
  size_t gather(iovec* iov, size_t max) const {
    size_t n = 0;
    size_t skip = head_;
    for (size_t i = first_; i < blocks_.size(); ++i) {
      const std::vector<uint8_t>& block = blocks_[i];
      if (n == max) break;
      if (block.size() > skip) {
        // iovec's base is not const: sendmsg() only reads through it.
        // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
        iov[n].iov_base = const_cast<uint8_t*>(block.data() + skip);
        iov[n].iov_len = block.size() - skip;
        ++n;
      }
      skip = 0;
    }
    return n;
  }

  // The unwritten part of the oldest block; stays valid until drop() releases it.
  std::span<const uint8_t> front() const {
    if (first_ == blocks_.size()) {
      return {};
    }
    const std::vector<uint8_t>& block = blocks_[first_];
    return {block.data() + head_, block.size() - head_};
  }

  void append(std::span<const uint8_t> data) {
    while (!data.empty()) {
      if (first_ == blocks_.size() || blocks_.back().size() == blocks_.back().capacity()) {
        newBlock();
      }
      std::vector<uint8_t>& block = blocks_.back();
      const size_t room = block.capacity() - block.size();
      const size_t n = data.size() < room ? data.size() : room;
      block.insert(block.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
      data = data.subspan(n);
      size_ += n;
    }
  }

  // Releases up to n bytes from the front.
  void drop(size_t n) {
    while (n > 0 && first_ < blocks_.size()) {
      std::vector<uint8_t>& block = blocks_[first_];
      const size_t take = n < block.size() - head_ ? n : block.size() - head_;
      head_ += take;
      size_ -= take;
      n -= take;
      if (head_ == block.size()) {
        if (pool_ != nullptr) {
          pool_->give(std::move(block));
        } else {
          // Keep one emptied block for reuse: steady output then allocates nothing.
          block.clear();
          spare_ = std::move(block);
        }
        popFront();
        head_ = 0;
      }
    }
  }

 private:
  void popFront() {
    ++first_;
    if (first_ == blocks_.size()) {
      blocks_.clear();
      first_ = 0;
    }
  }

  void newBlock() {
    // Written blocks' slots at the front are reused before the vector would grow.
    if (first_ > 0 && blocks_.size() == blocks_.capacity()) {
      blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(first_));
      first_ = 0;
    }
    if (pool_ != nullptr) {
      blocks_.push_back(pool_->take());
    } else if (spare_.capacity() >= block_bytes_) {
      blocks_.push_back(std::move(spare_));
      spare_ = {};
    } else {
      blocks_.emplace_back();
      blocks_.back().reserve(block_bytes_);
    }
  }

  size_t block_bytes_;
  BlockPool* pool_ = nullptr;
  // blocks_[first_..] are queued; a vector rather than a deque, which allocates 600 bytes
  // even while empty (a tunnel stream holds one queue for its whole life).
  std::vector<std::vector<uint8_t>> blocks_;
  size_t first_ = 0;
  std::vector<uint8_t> spare_;
  size_t head_ = 0;  // consumed bytes of blocks_[first_]
  size_t size_ = 0;
};

}  // namespace nodemesh::hbone
