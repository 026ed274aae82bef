#include "k8s/informer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/unit/k8s/k8s_test_util.h"

namespace nodemesh::k8s {
namespace {

using testing::clientFor;
using testing::json;
using testing::podJson;
using testing::Recorder;
using testing::Standin;
using testing::startStandin;

using std::chrono::milliseconds;

std::string ev(const char* what, const std::string& key, uint64_t rv) {
  return std::string(what) + " " + key + " " + std::to_string(rv);
}

InformerOptions podOptions(const std::string& node) {
  InformerOptions o = podInformerOptions(node);
  o.backoff_initial = milliseconds(50);
  o.backoff_max = milliseconds(400);
  return o;
}

// The watch requests the server saw, in order.
std::vector<Standin::RequestRecord> watchRequests(const Standin& server) {
  std::vector<Standin::RequestRecord> out;
  for (auto& r : server.requests()) {
    if (r.params.contains("watch")) out.push_back(r);
  }
  return out;
}

std::vector<Standin::RequestRecord> listRequests(const Standin& server) {
  std::vector<Standin::RequestRecord> out;
  for (auto& r : server.requests()) {
    if (!r.params.contains("watch")) out.push_back(r);
  }
  return out;
}

class K8sInformerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = startStandin();
    ASSERT_TRUE(server_);
  }
  void TearDown() override {
    if (informer_) informer_->stop();
  }
  void start(InformerOptions options) {
    auto client = clientFor(*server_);
    ASSERT_TRUE(client);
    informer_ = Informer::start(std::move(client), std::move(options), recorder_.callbacks());
  }
  uint64_t addPod(const std::string& name, const std::string& node,
                  const std::map<std::string, std::string>& labels = {}) {
    return server_->upsert(Standin::Kind::kPods, podJson("shop", name, node, labels));
  }

  std::unique_ptr<Standin> server_;
  Recorder recorder_;
  std::unique_ptr<Informer> informer_;
};

TEST_F(K8sInformerTest, ListsInPagesThenFollowsAddsChangesAndDeletes) {
  uint64_t a = addPod("a", "node-a");
  addPod("b", "node-b");
  uint64_t c = addPod("c", "node-a");
  uint64_t d = addPod("d", "node-a");
  InformerOptions options = podOptions("node-a");
  options.page_size = 2;
  start(options);
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  EXPECT_EQ(recorder_.events(),
            (std::vector<std::string>{ev("upsert", "shop/a", a), ev("upsert", "shop/c", c),
                                      ev("upsert", "shop/d", d), "synced"}));
  EXPECT_TRUE(informer_->synced());
  // Two pages of (at most) two keys each, the second one with the continue token.
  auto lists = listRequests(*server_);
  ASSERT_EQ(lists.size(), 2U);
  EXPECT_EQ(lists[0].params.at("limit"), "2");
  EXPECT_EQ(lists[0].params.at("fieldSelector"), "spec.nodeName=node-a");
  EXPECT_FALSE(lists[0].params.contains("continue"));
  EXPECT_TRUE(lists[1].params.contains("continue"));

  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  auto watches = watchRequests(*server_);
  ASSERT_EQ(watches.size(), 1U);
  EXPECT_EQ(watches[0].params.at("resourceVersion"), std::to_string(d));
  EXPECT_EQ(watches[0].params.at("allowWatchBookmarks"), "true");
  EXPECT_EQ(watches[0].params.at("timeoutSeconds"), "300");

  uint64_t e = addPod("e", "node-a");
  uint64_t a2 = addPod("a", "node-a", {{"istio.io/dataplane-mode", "ambient"}});
  addPod("f", "node-b");  // another node's pod is never seen
  uint64_t c_gone = server_->remove(Standin::Kind::kPods, "shop", "c");
  ASSERT_TRUE(recorder_.waitForEvent(ev("delete", "shop/c", c)));
  auto events = recorder_.events();
  EXPECT_EQ(std::vector<std::string>(events.begin() + 4, events.end()),
            (std::vector<std::string>{ev("upsert", "shop/e", e), ev("upsert", "shop/a", a2),
                                      ev("delete", "shop/c", c)}));
  // The delete hands over the last state the informer knew.
  EXPECT_EQ(recorder_.objectOf(
                ev("upsert", "shop/a", a2))["metadata"]["labels"]["istio.io/dataplane-mode"],
            "ambient");
  EXPECT_EQ(informer_->resourceVersion(), std::to_string(c_gone));
  EXPECT_TRUE(recorder_.errors().empty());
}

TEST_F(K8sInformerTest, ABookmarkAdvancesTheVersionTheNextWatchStartsFrom) {
  addPod("a", "node-a");
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  std::string before = informer_->resourceVersion();
  addPod("x", "node-b");
  uint64_t latest = addPod("y", "node-b");  // changes this watch never sees
  server_->sendBookmarks();
  for (int i = 0; i < 200 && informer_->resourceVersion() == before; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(informer_->resourceVersion(), std::to_string(latest));

  server_->dropWatches();
  for (int i = 0; i < 300 && watchRequests(*server_).size() < 2; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  auto watches = watchRequests(*server_);
  ASSERT_EQ(watches.size(), 2U);
  EXPECT_EQ(watches[1].params.at("resourceVersion"), std::to_string(latest));
  EXPECT_EQ(recorder_.count("upsert"), 1U);
}

TEST_F(K8sInformerTest, ADroppedWatchResumesFromTheLastVersionWithoutDuplicates) {
  uint64_t a = addPod("a", "node-a");
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  uint64_t b = addPod("b", "node-a");
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop/b", b)));

  server_->dropWatches();
  // Changes while no watch is open.
  uint64_t c = addPod("c", "node-a");
  uint64_t b2 = addPod("b", "node-a", {{"v", "2"}});
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop/b", b2)));
  EXPECT_EQ(recorder_.events(), (std::vector<std::string>{
                                    ev("upsert", "shop/a", a), "synced", ev("upsert", "shop/b", b),
                                    ev("upsert", "shop/c", c), ev("upsert", "shop/b", b2)}));
  auto watches = watchRequests(*server_);
  ASSERT_GE(watches.size(), 2U);
  EXPECT_EQ(watches[1].params.at("resourceVersion"), std::to_string(b));
  // Resumed, not relisted.
  EXPECT_EQ(listRequests(*server_).size(), 1U);
  ASSERT_FALSE(recorder_.errors().empty());  // the broken stream was reported
}

class K8sInformerGoneTest : public ::testing::TestWithParam<bool> {};

// 410 Gone, either as an ERROR event in the watch stream (watch cache) or as the watch's HTTP
// status: list again and report what changed, with deletes for what vanished.
TEST_P(K8sInformerGoneTest, RelistsAndSynthesisesDeletesForWhatVanished) {
  Standin::Options server_options;
  server_options.gone_as_http_status = GetParam();
  auto server = startStandin(server_options);
  ASSERT_TRUE(server);
  Recorder recorder;
  uint64_t a = server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a"));
  uint64_t b = server->upsert(Standin::Kind::kPods, podJson("shop", "b", "node-a"));
  uint64_t keep = server->upsert(Standin::Kind::kPods, podJson("shop", "keep", "node-a"));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto informer = Informer::start(std::move(client), podOptions("node-a"), recorder.callbacks());
  ASSERT_TRUE(recorder.waitForEvent("synced"));
  ASSERT_TRUE(server->waitForWatches(1, milliseconds(2000)));

  // The informer is cut off (it is refused while the changes happen) and the history it would
  // resume from is compacted away.
  server->setAcceptedToken("elsewhere");
  server->dropWatches();
  ASSERT_TRUE(recorder.waitForErrors(2));
  server->remove(Standin::Kind::kPods, "shop", "a");
  uint64_t b2 = server->upsert(Standin::Kind::kPods, podJson("shop", "b", "node-a", {{"v", "2"}}));
  uint64_t c = server->upsert(Standin::Kind::kPods, podJson("shop", "c", "node-a"));
  server->compact();
  server->setAcceptedToken("test-token");

  ASSERT_TRUE(recorder.waitForEvent(ev("upsert", "shop/c", c)));
  auto events = recorder.events();
  EXPECT_EQ(std::vector<std::string>(events.begin() + 4, events.end()),
            (std::vector<std::string>{ev("delete", "shop/a", a), ev("upsert", "shop/b", b2),
                                      ev("upsert", "shop/c", c)}))
      << "b was at " << b << ", keep at " << keep;
  EXPECT_EQ(recorder.count("synced"), 1U);
  EXPECT_EQ(recorder.count("upsert shop/keep"), 1U);  // unchanged: not reported again
  EXPECT_EQ(recorder.objectOf(ev("delete", "shop/a", a))["metadata"]["name"], "a");
  // The watch after the relist starts from the new list's version.
  ASSERT_TRUE(server->waitForWatches(1, milliseconds(2000)));
  for (int i = 0; i < 100 && informer->resourceVersion() != std::to_string(c); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(informer->resourceVersion(), std::to_string(c));
  informer->stop();
}

INSTANTIATE_TEST_SUITE_P(Both, K8sInformerGoneTest, ::testing::Values(false, true),
                         [](const auto& param_info) {
                           return std::string(param_info.param ? "HttpStatus" : "ErrorEvent");
                         });

TEST_F(K8sInformerTest, ABadTokenIsReportedAndRetriedWithBackoffUntilTheTokenFileIsFixed) {
  addPod("a", "node-a");
  server_->writeTokenFile("wrong");
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForErrors(2));
  std::this_thread::sleep_for(milliseconds(600));
  size_t attempts = listRequests(*server_).size();
  // Backoff from 50 ms doubling to 400 ms with jitter: at most 6 tries in ~0.65 s; a loop
  // without backoff would make hundreds.
  EXPECT_GE(attempts, 2U);
  EXPECT_LE(attempts, 8U);
  auto errors = recorder_.errors();
  EXPECT_NE(errors[0].find("401 Unauthorized"), std::string::npos) << errors[0];
  EXPECT_FALSE(informer_->synced());
  EXPECT_TRUE(recorder_.events().empty());

  server_->writeTokenFile("test-token");
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  EXPECT_EQ(recorder_.count("upsert shop/a"), 1U);
}

TEST_F(K8sInformerTest, MalformedEventsAreSkippedWithoutBreakingTheWatch) {
  uint64_t a = addPod("a", "node-a");
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));

  server_->injectWatchLine("{this is not json");
  server_->injectWatchLine(R"({"type": "ADDED"})");
  server_->injectWatchLine(R"({"type": "SOMETHING", "object": {}})");
  server_->injectWatchLine(R"({"type": "DELETED", "object": {"metadata": {}}})");
  server_->injectWatchLine(R"({"type": "BOOKMARK", "object": {"metadata": {}}})");
  // A known pod comes back malformed: skipped, and it is not deleted either.
  json bad = podJson("shop", "a", "node-a");
  bad["spec"]["hostNetwork"] = "yes";
  server_->upsert(Standin::Kind::kPods, bad);
  uint64_t b = addPod("b", "node-a");
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop/b", b)));
  EXPECT_EQ(recorder_.events(), (std::vector<std::string>{ev("upsert", "shop/a", a), "synced",
                                                          ev("upsert", "shop/b", b)}));
  EXPECT_EQ(watchRequests(*server_).size(), 1U);  // the same stream all along
  EXPECT_TRUE(recorder_.errors().empty());

  // A relist (after 410) that finds the pod still malformed keeps its last good state: no
  // delete.
  server_->setAcceptedToken("elsewhere");
  server_->dropWatches();
  ASSERT_TRUE(recorder_.waitForErrors(2));
  uint64_t c = addPod("c", "node-a");
  server_->compact();
  server_->setAcceptedToken("test-token");
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop/c", c)));
  EXPECT_EQ(listRequests(*server_).size(), 2U);  // the first list and the relist
  EXPECT_EQ(recorder_.count("delete"), 0U);
  EXPECT_EQ(recorder_.count("upsert shop/a"), 1U);
}

TEST_F(K8sInformerTest, AnErrorEventOtherThanGoneIsRetried) {
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  server_->injectWatchLine(
      R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd hiccup"}})");
  ASSERT_TRUE(recorder_.waitForErrors(1));
  EXPECT_NE(recorder_.errors()[0].find("ERROR event 500: etcd hiccup"), std::string::npos);
  uint64_t a = addPod("a", "node-a");
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop/a", a)));
  EXPECT_EQ(listRequests(*server_).size(), 1U);
}

TEST_F(K8sInformerTest, AWatchEndedByTimeoutSecondsIsResumedAtOnce) {
  InformerOptions options = podOptions("node-a");
  options.watch_timeout = std::chrono::seconds(0);  // the server ends each watch right away
  options.backoff_initial = milliseconds(5000);     // a backoff would fail the wait below
  start(options);
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  for (int i = 0; i < 200 && watchRequests(*server_).size() < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_GE(watchRequests(*server_).size(), 3U);
  EXPECT_TRUE(recorder_.errors().empty());
}

TEST_F(K8sInformerTest, StopEndsAnOpenWatchQuickly) {
  start(podOptions("node-a"));
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  auto begin = std::chrono::steady_clock::now();
  informer_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, milliseconds(1000));
  EXPECT_FALSE(recorder_.waitForEvent("never", milliseconds(50)));
}

TEST_F(K8sInformerTest, WatchesNamespacesToo) {
  server_->upsert(Standin::Kind::kNamespaces,
                  testing::namespaceJson("shop", {{"istio.io/dataplane-mode", "ambient"}}));
  start(namespaceInformerOptions());
  ASSERT_TRUE(recorder_.waitForEvent("synced"));
  ASSERT_TRUE(server_->waitForWatches(1, milliseconds(2000)));
  uint64_t rv = server_->upsert(Standin::Kind::kNamespaces, testing::namespaceJson("shop"));
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "shop", rv)));
  auto ns = parseNamespace(recorder_.objectOf(ev("upsert", "shop", rv)));
  ASSERT_TRUE(ns);
  EXPECT_TRUE(ns->metadata.labels.empty());

  // A namespace with a label that is not a string is skipped; the next one arrives.
  server_->upsert(Standin::Kind::kNamespaces,
                  json{{"metadata", {{"name", "bad"}, {"labels", {{"x", 1}}}}}});
  uint64_t good = server_->upsert(Standin::Kind::kNamespaces, testing::namespaceJson("good"));
  ASSERT_TRUE(recorder_.waitForEvent(ev("upsert", "good", good)));
  EXPECT_EQ(recorder_.count("upsert bad"), 0U);
}

}  // namespace
}  // namespace nodemesh::k8s
