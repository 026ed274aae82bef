// The stand-in API server's own behaviour where the client and informer tests rely on it
// matching the real API server.

#include "tests/k8s_standin/standin_api_server.h"

#include <gtest/gtest.h>

#include "tests/unit/k8s/k8s_test_util.h"

namespace nodemesh::k8s {
namespace {

using testing::clientFor;
using testing::json;
using testing::podJson;
using testing::Standin;
using testing::startStandin;

TEST(K8sStandinTest, PagesComeFromOneSnapshotAndExpireWithCompaction) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  for (const char* name : {"a", "b", "c"}) {
    server->upsert(Standin::Kind::kPods, podJson("shop", name, "node-a"));
  }
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto first = client->getJson("/api/v1/pods?limit=1");
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ((*first)["items"].size(), 1U);
  std::string snapshot = (*first)["metadata"]["resourceVersion"];
  std::string cont = (*first)["metadata"]["continue"];

  // Changes after the first page do not show in the next ones.
  server->remove(Standin::Kind::kPods, "shop", "c");
  server->upsert(Standin::Kind::kPods, podJson("shop", "b", "node-a", {{"v", "2"}}));
  auto second = client->getJson("/api/v1/pods?limit=5&continue=" + queryEscape(cont));
  ASSERT_TRUE(second) << second.error().message;
  ASSERT_EQ((*second)["items"].size(), 2U);
  EXPECT_EQ((*second)["items"][0]["metadata"]["name"], "b");
  EXPECT_FALSE((*second)["items"][0]["metadata"].contains("labels"));
  EXPECT_EQ((*second)["items"][1]["metadata"]["name"], "c");
  EXPECT_EQ((*second)["metadata"]["resourceVersion"], snapshot);
  EXPECT_FALSE((*second)["metadata"].contains("continue"));

  server->compact();
  auto expired = client->get("/api/v1/pods?limit=5&continue=" + queryEscape(cont));
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, 410);
  auto latest = client->getJson("/api/v1/pods");
  ASSERT_TRUE(latest);
  EXPECT_EQ((*latest)["items"].size(), 2U);
}

TEST(K8sStandinTest, SelectorsFilterListsAndBadOnesAre400) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a", {{"app", "web"}}));
  server->upsert(Standin::Kind::kPods, podJson("shop", "b", "node-b", {{"app", "db"}}));
  server->upsert(Standin::Kind::kPods, podJson("other", "c", "node-a"));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto names = [&](const std::string& path) {
    std::vector<std::string> out;
    auto list = client->getJson(path);
    EXPECT_TRUE(list) << path << ": " << list.error().message;
    if (list) {
      for (auto& item : (*list)["items"]) out.push_back(item["metadata"]["name"]);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names("/api/v1/pods?fieldSelector=" + queryEscape("spec.nodeName=node-a")),
            (V{"c", "a"}));  // ordered by key: other/c before shop/a
  EXPECT_EQ(names("/api/v1/namespaces/shop/pods"), (V{"a", "b"}));
  EXPECT_EQ(names("/api/v1/pods?labelSelector=" + queryEscape("app!=web")), (V{"c", "b"}));
  EXPECT_EQ(names("/api/v1/pods?labelSelector=" + queryEscape("!app")), (V{"c"}));
  auto bad = client->get("/api/v1/pods?labelSelector=" + queryEscape("app in (web)"));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

TEST(K8sStandinTest, APodThatLeavesAFilteredWatchIsDeletedFromIt) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a", {{"app", "web"}}));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  std::vector<std::string> types;
  auto rv = server->resourceVersion();
  std::thread changer([&] {
    server->waitForWatches(1, std::chrono::seconds(2));
    server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a", {{"app", "db"}}));
    server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a", {{"app", "web"}}));
  });
  auto result = client->watch(
      "/api/v1/pods?watch=true&timeoutSeconds=1&labelSelector=app%3Dweb"
      "&resourceVersion=" +
          std::to_string(rv),
      std::chrono::seconds(3), [&](std::string_view line) {
        types.push_back(json::parse(line)["type"]);
        return true;
      });
  changer.join();
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(types, (std::vector<std::string>{"DELETED", "ADDED"}));
}

TEST(K8sStandinTest, PatchingStatusKeepsTheSpecAndChecksTheResourceVersion) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  uint64_t rv = server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a"));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  const std::string path = "/api/v1/namespaces/shop/pods/a/status";
  auto ok = client->mergePatch(
      path, {{"spec", {{"nodeName", "node-b"}}}, {"status", {{"phase", "Failed"}}}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  auto stored = server->get(Standin::Kind::kPods, "shop", "a");
  EXPECT_EQ((*stored)["spec"]["nodeName"], "node-a");
  EXPECT_EQ((*stored)["status"]["phase"], "Failed");
  auto conflict = client->mergePatch(
      path, {{"metadata", {{"resourceVersion", std::to_string(rv)}}}});  // now stale
  ASSERT_TRUE(conflict);
  EXPECT_EQ(conflict->status, 409);
}

}  // namespace
}  // namespace nodemesh::k8s
