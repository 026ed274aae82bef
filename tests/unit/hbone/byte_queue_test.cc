// ByteQueue's ring (hbone/byte_queue.h): order across the wrap, growth while wrapped, and no
// growth in steady streaming. OutputQueue's blocks: views that stay valid while more is
// appended, gathering for one send, and the BlockPool that recycles blocks between queues.
#include "hbone/byte_queue.h"

#include <cstdint>
#include <string>
#include <vector>

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

std::string readAll(ByteQueue& q, size_t chunk) {
  std::string out;
  std::vector<uint8_t> buf(chunk);
  while (!q.empty()) {
    const size_t n = q.read(buf);
    out.append(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return out;
}

// Appends and reads of uneven sizes against a string model: the bytes come out in order,
// whether a copy wraps around the end of the buffer or not.
TEST(ByteQueueTest, KeepsTheOrderAcrossTheWrap) {
  ByteQueue q;
  std::string model;
  uint32_t seed = 12345;
  auto next = [&seed](uint32_t bound) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % bound;
  };
  char c = 'a';
  for (int round = 0; round < 2000; ++round) {
    std::string chunk(next(300), ' ');
    for (char& b : chunk) b = c = c == 'z' ? 'a' : static_cast<char>(c + 1);
    q.append(bytes(chunk));
    model += chunk;
    std::vector<uint8_t> buf(next(300));
    const size_t n = q.read(buf);
    ASSERT_EQ(n, std::min(buf.size(), model.size()));
    ASSERT_EQ(std::string(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)),
              model.substr(0, n))
        << "round " << round;
    model.erase(0, n);
    ASSERT_EQ(q.size(), model.size());
  }
  EXPECT_EQ(readAll(q, 7), model);
}

// A queue that streams at a steady level keeps its buffer: the free space behind the front is
// reused (the vector it replaced moved the whole queue forward whenever it filled).
TEST(ByteQueueTest, SteadyStreamingNeitherGrowsNorMoves) {
  ByteQueue q;
  const std::string chunk(16 * 1024, 'x');
  for (int i = 0; i < 4; ++i) q.append(bytes(chunk));
  const size_t capacity = q.capacity();
  std::vector<uint8_t> buf(16 * 1024);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(q.read(buf), buf.size());
    q.append(bytes(chunk));
    ASSERT_EQ(q.capacity(), capacity) << "append " << i;
  }
  EXPECT_EQ(q.size(), 4u * chunk.size());
}

// Growing while the queued bytes wrap around the end: they move to the new buffer in order.
TEST(ByteQueueTest, GrowsWhileWrappedInOrder) {
  ByteQueue q;
  q.append(bytes("abcdefgh"));
  std::vector<uint8_t> buf(6);
  ASSERT_EQ(q.read(buf), 6u);  // "gh" left at the end of the buffer
  q.append(bytes("ijklmn"));   // wraps: "ijklmn" at the front, the buffer full
  ASSERT_EQ(q.capacity(), 8u);
  q.append(bytes("opqrstuvwxyz"));  // grows
  EXPECT_GT(q.capacity(), 8u);
  EXPECT_EQ(readAll(q, 5), "ghijklmnopqrstuvwxyz");
}

TEST(ByteQueueTest, DropAndClear) {
  ByteQueue q;
  q.append(bytes("abcdef"));
  q.drop(2);
  EXPECT_EQ(q.size(), 4u);
  q.drop(100);
  EXPECT_TRUE(q.empty());
  q.append(bytes("xyz"));
  q.clear();
  EXPECT_TRUE(q.empty());
  std::vector<uint8_t> buf(4);
  EXPECT_EQ(q.read(buf), 0u);
  q.append(bytes("12"));
  EXPECT_EQ(readAll(q, 4), "12");
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
