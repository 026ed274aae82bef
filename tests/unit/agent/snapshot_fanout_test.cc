// SnapshotFanout: a part that subscribes late still gets the config in force, and one that
// unsubscribed (was destroyed) hears nothing more.
#include "agent/snapshot_fanout.h"

#include <gtest/gtest.h>

namespace nodemesh::agent {
namespace {

model::SnapshotPtr empty() {
  return model::Snapshot::create({}, {}, {});
}

TEST(SnapshotFanoutTest, LateSubscriberGetsTheCurrentSnapshotAtOnce) {
  SnapshotFanout fanout;
  EXPECT_EQ(fanout.current(), nullptr);
  auto first = empty();
  fanout.publish(first);
  EXPECT_EQ(fanout.current(), first);

  std::vector<model::SnapshotPtr> seen;
  auto subscription = fanout.subscribe([&](const model::SnapshotPtr& s) { seen.push_back(s); });
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], first);

  auto second = empty();
  fanout.publish(second);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], second);
}

TEST(SnapshotFanoutTest, NoSnapshotBeforeTheFirstPublish) {
  SnapshotFanout fanout;
  int calls = 0;
  auto subscription = fanout.subscribe([&](const model::SnapshotPtr&) { ++calls; });
  EXPECT_EQ(calls, 0);
  fanout.publish(empty());
  EXPECT_EQ(calls, 1);
}

TEST(SnapshotFanoutTest, DestroyedSubscriptionHearsNothingMore) {
  SnapshotFanout fanout;
  int a = 0;
  int b = 0;
  auto keep = fanout.subscribe([&](const model::SnapshotPtr&) { ++a; });
  auto drop = fanout.subscribe([&](const model::SnapshotPtr&) { ++b; });
  fanout.publish(empty());
  drop.reset();
  fanout.publish(empty());
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 1);
}

}  // namespace
}  // namespace nodemesh::agent
