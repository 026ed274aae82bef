#pragma once

// A Ring that records what the code under test submits and completes operations when the test
// says so, plus receive buffers in plain memory: the tunnel's connection state machines run
// without io_uring or privileges.

#include <gtest/gtest.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "io/recv_ring.h"
#include "io/ring.h"
#include "tunnel/relay_context.h"

namespace nodemesh::tunnel::testing {

// A socket descriptor to own (one end of a socket pair whose other end is closed).
inline UniqueFd socketFd() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  return UniqueFd(sv[0]);
}

struct FakeOp {
  enum Kind { kAccept, kRecv, kSend, kShutdown, kConnect, kTimeout, kRead, kPoll };
  Kind kind;
  int fd = -1;
  io::OpTag* tag = nullptr;
  std::string data;     // a send's bytes
  unsigned events = 0;  // a poll's
};

class FakeRing final : public io::Ring {
 public:
  void acceptMultishot(int fd, io::OpTag* tag) override { push(FakeOp::kAccept, fd, tag); }
  void recvMultishot(int fd, uint16_t /*buffer_group*/, io::OpTag* tag) override {
    push(FakeOp::kRecv, fd, tag);
  }
  void send(int fd, std::span<const uint8_t> data, io::OpTag* tag) override {
    FakeOp op{FakeOp::kSend, fd, tag, std::string(data.begin(), data.end())};
    pending.push_back(op);
  }
  // Recorded as a kSend of the gathered bytes (sends counts the calls of each kind).
  void sendmsg(int fd, const msghdr* msg, io::OpTag* tag) override {
    std::string data;
    for (size_t i = 0; i < msg->msg_iovlen; ++i) {
      data.append(static_cast<const char*>(msg->msg_iov[i].iov_base), msg->msg_iov[i].iov_len);
    }
    ++gathered_sends;
    pending.push_back(FakeOp{FakeOp::kSend, fd, tag, std::move(data)});
  }
  void shutdownWrite(int fd, io::OpTag* tag) override { push(FakeOp::kShutdown, fd, tag); }
  void connect(int fd, const sockaddr_storage& /*addr*/, socklen_t /*len*/,
               io::OpTag* tag) override {
    push(FakeOp::kConnect, fd, tag);
  }
  void timeout(const __kernel_timespec& /*after*/, io::OpTag* tag) override {
    push(FakeOp::kTimeout, -1, tag);
  }
  void removeTimeout(io::OpTag* tag) override { cancel(tag); }
  void poll(int fd, unsigned events, io::OpTag* tag) override {
    pending.push_back(FakeOp{FakeOp::kPoll, fd, tag, {}, events});
  }
  void read(int fd, void* /*buf*/, size_t /*len*/, io::OpTag* tag) override {
    push(FakeOp::kRead, fd, tag);
  }
  // Cancels are recorded; runCancels() then completes the cancelled operations with
  // -ECANCELED, as the kernel does in a later batch of completions (never inside the call).
  void cancel(io::OpTag* tag) override { cancels.push_back(tag); }
  void cancelFd(int fd) override { cancelled_fds.push_back(fd); }
  void runCancels() {
    auto tags = std::move(cancels);
    auto fds = std::move(cancelled_fds);
    cancels.clear();
    cancelled_fds.clear();
    completeAll(
        [&](const FakeOp& op) {
          return std::find(tags.begin(), tags.end(), op.tag) != tags.end() ||
                 std::find(fds.begin(), fds.end(), op.fd) != fds.end();
        },
        -ECANCELED);
  }

  // The pending operation of `kind` on `fd`; nullptr when none.
  FakeOp* find(FakeOp::Kind kind, int fd) {
    for (auto& op : pending) {
      if (op.kind == kind && op.fd == fd) return &op;
    }
    return nullptr;
  }
  bool has(FakeOp::Kind kind, int fd) { return find(kind, fd) != nullptr; }
  // The pending poll on `fd` for `events` (a descriptor may carry two: one per direction).
  FakeOp* findPoll(int fd, unsigned events) {
    for (auto& op : pending) {
      if (op.kind == FakeOp::kPoll && op.fd == fd && op.events == events) return &op;
    }
    return nullptr;
  }
  // Completes that poll as the kernel would once the descriptor is ready: with the events.
  void completePoll(int fd, unsigned events) {
    for (auto it = pending.begin(); it != pending.end(); ++it) {
      if (it->kind == FakeOp::kPoll && it->fd == fd && it->events == events) {
        io::OpTag* tag = it->tag;
        pending.erase(it);
        tag->handler->onCompletion(tag->op, static_cast<int>(events), 0);
        return;
      }
    }
    ADD_FAILURE_AT(__FILE__, __LINE__) << "no poll for " << events << " pending on fd " << fd;
  }

  // Completes (and forgets) the pending operation of `kind` on `fd` with `res`.
  void complete(FakeOp::Kind kind, int fd, int res, unsigned flags = 0) {
    for (auto it = pending.begin(); it != pending.end(); ++it) {
      if (it->kind == kind && it->fd == fd) {
        io::OpTag* tag = it->tag;
        pending.erase(it);
        tag->handler->onCompletion(tag->op, res, flags);
        return;
      }
    }
    ADD_FAILURE_AT(__FILE__, __LINE__)
        << "no pending operation of kind " << kind << " on fd " << fd;
  }

  std::deque<FakeOp> pending;
  std::vector<io::OpTag*> cancels;
  std::vector<int> cancelled_fds;
  int gathered_sends = 0;

 private:
  void push(FakeOp::Kind kind, int fd, io::OpTag* tag) {
    pending.push_back(FakeOp{kind, fd, tag, {}});
  }
  template <typename Pred>
  void completeAll(Pred pred, int res) {
    std::vector<FakeOp> hit;
    for (auto it = pending.begin(); it != pending.end();) {
      if (pred(*it)) {
        hit.push_back(*it);
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& op : hit) op.tag->handler->onCompletion(op.tag->op, res, 0);
  }
};

// Receive buffers in memory; deliver() plays the kernel filling one for a multishot receive.
class FakeBuffers final : public io::ReceiveBuffers {
 public:
  explicit FakeBuffers(unsigned count = 16, size_t size = 4096)
      : storage_(count * size), size_(size), free_(count) {
    for (unsigned i = 0; i < count; ++i) free_[i] = static_cast<uint16_t>(i);
  }
  uint16_t group() const override { return 0; }
  uint8_t* buffer(uint16_t bid) override { return storage_.data() + bid * size_; }
  void recycle(uint16_t bid) override {
    --in_use_;
    free_.push_back(bid);
  }
  void taken() override { ++in_use_; }
  unsigned available() const override { return static_cast<unsigned>(free_.size()); }
  unsigned inUse() const { return in_use_; }

  // Completes the receive armed on `fd` with `bytes` in a buffer (the receive stays armed).
  void deliver(FakeRing& ring, int fd, const std::string& bytes) {
    FakeOp* op = ring.find(FakeOp::kRecv, fd);
    ASSERT_NE(op, nullptr) << "no receive armed on fd " << fd;
    ASSERT_FALSE(free_.empty());
    ASSERT_LE(bytes.size(), size_);
    const uint16_t bid = free_.front();
    free_.erase(free_.begin());
    std::memcpy(buffer(bid), bytes.data(), bytes.size());
    io::OpTag* tag = op->tag;
    const unsigned flags = IORING_CQE_F_BUFFER | IORING_CQE_F_MORE |
                           (static_cast<unsigned>(bid) << IORING_CQE_BUFFER_SHIFT);
    tag->handler->onCompletion(tag->op, static_cast<int>(bytes.size()), flags);
  }
  // The peer's EOF on `fd`: the final completion of its receive.
  void deliverEof(FakeRing& ring, int fd) { ring.complete(FakeOp::kRecv, fd, 0, 0); }

 private:
  std::vector<uint8_t> storage_;
  size_t size_;
  std::vector<uint16_t> free_;
  unsigned in_use_ = 0;
};

// Records what the connections report.
class RecordingEvents final : public ConnectionEvents {
 public:
  void opened(const ConnectionRecord& r) override { opened_records.push_back(r); }
  void finished(const ConnectionRecord& r) override { finished_records.push_back(r); }
  std::vector<ConnectionRecord> opened_records;
  std::vector<ConnectionRecord> finished_records;
};

// A load balancer stand-in: retries when told to, recording each call.
class RecordingServices final : public ServiceAttempts {
 public:
  bool retry(std::unique_ptr<ServiceTarget>& target, UniqueFd& app,
             const SocketAddress& /*app_addr*/, const std::string& why) override {
    retries.push_back(why);
    if (!accept_retry) return false;
    retried_targets.push_back(std::move(target));
    retried_apps.push_back(std::move(app));
    return true;
  }
  void established(ServiceTarget& /*target*/) override { ++established_count; }
  void ended(ServiceTarget& /*target*/) override { ++ended_count; }

  bool accept_retry = false;
  std::vector<std::string> retries;
  std::vector<std::unique_ptr<ServiceTarget>> retried_targets;
  std::vector<UniqueFd> retried_apps;
  int established_count = 0;
  int ended_count = 0;
};

// The parts every relay fixture needs: the fake ring and buffers, and the parties a relay
// reports to, with the RelayContext over them.
class RelayTestBase : public ::testing::Test {
 protected:
  explicit RelayTestBase(uint64_t budget_bytes = 0) : budget_(budget_bytes) {}

  RelayContext context(SplicePipes* pipes = nullptr) {
    return RelayContext{ring_,   receivers_, buffers_, counters_,
                        events_, services_,  budget_,  std::chrono::milliseconds(10000),
                        pipes};
  }

  FakeRing ring_;
  FakeBuffers buffers_;
  io::Receivers receivers_{ring_};
  TunnelCounters counters_;
  RecordingEvents events_;
  RecordingServices services_;
  BufferBudget budget_;
};

}  // namespace nodemesh::tunnel::testing
