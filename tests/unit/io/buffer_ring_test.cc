// The provided buffer ring (io/recv_ring.h) on a real io_uring: the kernel picks the buffers,
// so what is checked is which buffers it gets to touch, and that a burst larger than the
// window still gets every byte through.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/fd.h"
#include "io/recv_ring.h"
#include "io/uring_ring.h"

namespace nodemesh::io {
namespace {

// The receive side of one socket pair: the chunks its multishot receive delivered.
struct Reader final : CompletionHandler {
  Receivers* receivers = nullptr;
  Receiver rx;
  OpTag tag{this, 0};
  UniqueFd mine;
  UniqueFd peer;
  std::string got;
  std::set<uint16_t>* bids = nullptr;

  void onCompletion(uint8_t /*op*/, int res, unsigned flags) override {
    receivers->onCompletion(rx, res, flags);
    while (!rx.chunks.empty()) {
      bids->insert(rx.chunks.front().bid);
      const auto bytes = rx.front();
      got.append(bytes.begin(), bytes.end());
      receivers->consume(rx, bytes.size());
    }
  }
};

class BufferRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ring = UringRing::create(256, std::chrono::milliseconds(1000), false);
    if (!ring) GTEST_SKIP() << "no io_uring here: " << ring.error().message;
    ring_ = std::move(*ring);
    auto buffers = ring_->createBufferRing(0, 128, 4096);
    ASSERT_TRUE(buffers.ok()) << buffers.error().message;
    buffers_ = std::move(*buffers);
    receivers_ = std::make_unique<Receivers>(*ring_);
  }

  Reader& reader() {
    auto r = std::make_unique<Reader>();
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    r->mine = UniqueFd(sv[0]);
    r->peer = UniqueFd(sv[1]);
    r->receivers = receivers_.get();
    r->bids = &bids_;
    r->rx.fd = r->mine.get();
    r->rx.tag = &r->tag;
    r->rx.buffers = buffers_.get();
    receivers_->arm(r->rx);
    readers_.push_back(std::move(r));
    return *readers_.back();
  }

  std::unique_ptr<UringRing> ring_;
  std::unique_ptr<BufferRing> buffers_;
  std::unique_ptr<Receivers> receivers_;
  std::vector<std::unique_ptr<Reader>> readers_;
  std::set<uint16_t> bids_;
};

TEST_F(BufferRingTest, LightLoadKeepsReusingTheSameFewBuffers) {
  Reader& r = reader();
  // 500 small messages, one at a time: a ring holding all 128 buffers would go round all of
  // them (and make all their pages resident).
  std::string sent;
  for (int i = 0; i < 500; ++i) {
    const std::string msg = "message " + std::to_string(i) + ";";
    ASSERT_EQ(::write(r.peer.get(), msg.data(), msg.size()), static_cast<ssize_t>(msg.size()));
    sent += msg;
    while (r.got.size() < sent.size()) ring_->submitAndDispatch();
  }
  EXPECT_EQ(r.got, sent);
  EXPECT_LE(bids_.size(), BufferRing::kInitialWindow);
  EXPECT_EQ(buffers_->window(), BufferRing::kInitialWindow);
}

TEST_F(BufferRingTest, ABurstLargerThanTheWindowGrowsItAndLosesNothing) {
  // 40 sockets with 3 chunks' worth each, all there when the receives are submitted: the
  // kernel wants more buffers at once than the window holds.
  std::vector<Reader*> all;
  all.reserve(40);
  for (int i = 0; i < 40; ++i) all.push_back(&reader());
  std::string block(3 * 4096, 'x');
  for (size_t i = 0; i < all.size(); ++i) {
    block[0] = static_cast<char>('a' + i % 26);
    ASSERT_EQ(::write(all[i]->peer.get(), block.data(), block.size()),
              static_cast<ssize_t>(block.size()));
    all[i]->peer.reset();  // then EOF
  }
  auto pending = [&] {
    for (Reader* r : all) {
      if (!r->rx.eof) return true;
    }
    return false;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (pending() && std::chrono::steady_clock::now() < deadline) {
    ring_->submitAndDispatch();
    receivers_->rearmStarved();  // the worker loop's safety net, once per pass
  }
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i]->got.size(), block.size()) << "socket " << i;
    EXPECT_EQ(all[i]->got[0], static_cast<char>('a' + i % 26));
  }
  EXPECT_GT(buffers_->window(), BufferRing::kInitialWindow);
}

}  // namespace
}  // namespace nodemesh::io
