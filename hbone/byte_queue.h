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

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
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

class OutputQueue {
 public:
  // `keep_spare_when_empty` false: a queue that runs empty frees its last block, for owners
  // that may idle for long (a tunnel stream) rather than produce steadily (a session's frames).
  explicit OutputQueue(size_t block_bytes, bool keep_spare_when_empty = true)
      : block_bytes_(block_bytes), keep_spare_when_empty_(keep_spare_when_empty) {}

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The unwritten part of the oldest block; stays valid until drop() releases it.
  std::span<const uint8_t> front() const {
    if (blocks_.empty()) {
      return {};
    }
    const std::vector<uint8_t>& block = blocks_.front();
    return {block.data() + head_, block.size() - head_};
  }

  void append(std::span<const uint8_t> data) {
    while (!data.empty()) {
      if (blocks_.empty() || blocks_.back().size() == blocks_.back().capacity()) {
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
    while (n > 0 && !blocks_.empty()) {
      std::vector<uint8_t>& block = blocks_.front();
      const size_t take = n < block.size() - head_ ? n : block.size() - head_;
      head_ += take;
      size_ -= take;
      n -= take;
      if (head_ == block.size()) {
        // Keep one emptied block for reuse: steady output then allocates nothing.
        block.clear();
        spare_ = std::move(block);
        blocks_.pop_front();
        head_ = 0;
        if (blocks_.empty() && !keep_spare_when_empty_) spare_ = {};
      }
    }
  }

 private:
  void newBlock() {
    if (spare_.capacity() >= block_bytes_) {
      blocks_.push_back(std::move(spare_));
      spare_ = {};
    } else {
      blocks_.emplace_back();
      blocks_.back().reserve(block_bytes_);
    }
  }

  size_t block_bytes_;
  bool keep_spare_when_empty_;
  std::deque<std::vector<uint8_t>> blocks_;
  std::vector<uint8_t> spare_;
  size_t head_ = 0;  // consumed bytes of blocks_.front()
  size_t size_ = 0;
};

}  // namespace nodemesh::hbone
