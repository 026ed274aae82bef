#pragma once

// Byte FIFOs for the HTTP/2 codec.
//
// ByteQueue: one contiguous buffer, append at the back, read from the front; the front is
// compacted lazily, so steady streaming costs one memcpy in and one out per byte and no
// allocation once the buffer has grown to its working size.
//
// OutputQueue: fixed-capacity blocks that never reallocate, so a view of the front block stays
// valid while more bytes are appended behind it (a write to the transport may still be in
// flight when the next frames are produced).

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

namespace nodemesh::hbone {

class ByteQueue {
 public:
  size_t size() const { return buf_.size() - head_; }
  bool empty() const { return size() == 0; }

  // The queued bytes; valid until the next non-const call.
  std::span<const uint8_t> front() const { return {buf_.data() + head_, size()}; }

  void append(std::span<const uint8_t> data) {
    if (data.empty()) {
      return;
    }
    // Reclaim the consumed front before the vector would have to grow for it.
    if (head_ > 0 && buf_.size() + data.size() > buf_.capacity()) {
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    buf_.insert(buf_.end(), data.begin(), data.end());
  }

  // Copies up to dst.size() bytes out of the front; returns how many.
  size_t read(std::span<uint8_t> dst) {
    const size_t n = dst.size() < size() ? dst.size() : size();
    if (n > 0) {
      std::memcpy(dst.data(), buf_.data() + head_, n);
    }
    drop(n);
    return n;
  }

  // Discards up to n bytes from the front.
  void drop(size_t n) {
    head_ += n < size() ? n : size();
    if (head_ == buf_.size()) {
      buf_.clear();
      head_ = 0;
    }
  }

  void clear() {
    buf_.clear();
    head_ = 0;
  }

 private:
  std::vector<uint8_t> buf_;
  size_t head_ = 0;
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
