// OutputQueue's blocks (hbone/byte_queue.h): views that stay valid while more is appended,
// gathering for one send, and the BlockPool that recycles blocks between queues.
#include "hbone/byte_queue.h"

#include <string>

#include <gtest/gtest.h>

namespace nodemesh::hbone {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string gathered(const OutputQueue& q, size_t max) {
  iovec iov[8];
  const size_t n = q.gather(iov, std::min<size_t>(max, 8));
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  return out;
}

TEST(OutputQueueTest, GatherSpansTheBlocksFromTheUnwrittenFront) {
  OutputQueue q(4);
  q.append(bytes("abcdefghij"));  // blocks "abcd" "efgh" "ij"
  EXPECT_EQ(gathered(q, 8), "abcdefghij");
  q.drop(2);
  EXPECT_EQ(gathered(q, 8), "cdefghij");
  EXPECT_EQ(gathered(q, 2), "cdefgh") << "at most `max` blocks";
  const std::span<const uint8_t> front = q.front();
  q.append(bytes("kl"));
  EXPECT_EQ(std::string(front.begin(), front.end()), "cd") << "a view survives an append";
  q.drop(8);
  EXPECT_EQ(gathered(q, 8), "kl");
  q.drop(2);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(gathered(q, 8), "");
}

// Written blocks at the front make room for new ones at the back, in order.
TEST(OutputQueueTest, AppendsAndDropsInterleavedKeepTheOrder) {
  OutputQueue q(4);
  std::string expected;
  std::string all;
  for (int round = 0; round < 20; ++round) {
    const std::string chunk = std::to_string(round * 1000 + 123456);
    q.append(bytes(chunk));
    all += chunk;
    if (round % 3 == 2) q.drop(5);
  }
  size_t dropped = 0;
  for (int round = 0; round < 20; ++round) dropped += round % 3 == 2 ? 5 : 0;
  expected = all.substr(dropped);
  ASSERT_EQ(q.size(), expected.size());
  std::string out;
  while (!q.empty()) {
    const std::span<const uint8_t> f = q.front();
    out.append(f.begin(), f.end());
    q.drop(f.size());
  }
  EXPECT_EQ(out, expected);
}

TEST(OutputQueueTest, PooledBlocksGoBackOnceWrittenAndServeTheNextQueue) {
  BlockPool pool(4, 2);
  {
    OutputQueue a(pool);
    a.append(bytes("abcdefghijkl"));  // three blocks, all from new allocations
    EXPECT_EQ(pool.freeBlocks(), 0u);
    a.drop(5);
    EXPECT_EQ(pool.freeBlocks(), 1u) << "the written block went back";
    a.drop(7);
    EXPECT_EQ(pool.freeBlocks(), 2u) << "no spare kept by an empty queue; the third was freed";
    OutputQueue b(pool);
    b.append(bytes("mnop"));
    EXPECT_EQ(pool.freeBlocks(), 1u) << "taken from the pool";
    b.append(bytes("q"));
    EXPECT_EQ(pool.freeBlocks(), 0u);
    EXPECT_EQ(gathered(b, 8), "mnopq");
  }
  EXPECT_EQ(pool.freeBlocks(), 2u) << "a destroyed queue gives its blocks back";
}

}  // namespace
}  // namespace nodemesh::hbone
