#include "k8s/annotate.h"

#include <gtest/gtest.h>

#include "tests/unit/k8s/k8s_test_util.h"

namespace nodemesh::k8s {
namespace {

using testing::clientFor;
using testing::json;
using testing::podJson;
using testing::Standin;
using testing::startStandin;

TEST(K8sAnnotateTest, ThePatchIsIstioCnis) {
  EXPECT_EQ(redirectionPatch(true).dump(),
            R"({"metadata":{"annotations":{"ambient.istio.io/redirection":"enabled"}}})");
  EXPECT_EQ(redirectionPatch(false).dump(),
            R"({"metadata":{"annotations":{"ambient.istio.io/redirection":null}}})");
  EXPECT_EQ(*podStatusPath("shop", "web-1"), "/api/v1/namespaces/shop/pods/web-1/status");
}

TEST(K8sAnnotateTest, SetAndRemoveThroughPodsStatus) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  json pod = podJson("shop", "web-1", "node-a");
  pod["metadata"]["annotations"] = {{"keep", "me"}};
  uint64_t created = server->upsert(Standin::Kind::kPods, pod);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);

  ASSERT_TRUE(setRedirectionAnnotation(*client, "shop", "web-1"));
  auto stored = server->get(Standin::Kind::kPods, "shop", "web-1");
  ASSERT_TRUE(stored);
  EXPECT_EQ((*stored)["metadata"]["annotations"]["ambient.istio.io/redirection"], "enabled");
  EXPECT_EQ((*stored)["metadata"]["annotations"]["keep"], "me");
  EXPECT_EQ((*stored)["metadata"]["resourceVersion"], std::to_string(created + 1));
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0].method, "PATCH");
  EXPECT_EQ(requests[0].path, "/api/v1/namespaces/shop/pods/web-1/status");

  ASSERT_TRUE(removeRedirectionAnnotation(*client, "shop", "web-1"));
  stored = server->get(Standin::Kind::kPods, "shop", "web-1");
  EXPECT_FALSE((*stored)["metadata"]["annotations"].contains("ambient.istio.io/redirection"));
  EXPECT_EQ((*stored)["metadata"]["annotations"]["keep"], "me");
}

TEST(K8sAnnotateTest, AMissingPodFailsToSetButCountsAsRemoved) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  Status set = setRedirectionAnnotation(*client, "shop", "gone");
  ASSERT_FALSE(set);
  EXPECT_EQ(set.error().code, ENOENT);
  EXPECT_EQ(set.error().message,
            "PATCH /api/v1/namespaces/shop/pods/gone/status: 404 Not Found: pods \"gone\" not "
            "found");
  EXPECT_TRUE(removeRedirectionAnnotation(*client, "shop", "gone"));
}

TEST(K8sAnnotateTest, ARefusedPatchSaysWhy) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  server->upsert(Standin::Kind::kPods, podJson("shop", "web-1", "node-a"));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  server->setAcceptedToken("other");
  Status set = setRedirectionAnnotation(*client, "shop", "web-1");
  ASSERT_FALSE(set);
  EXPECT_NE(set.error().message.find("401 Unauthorized"), std::string::npos);
  EXPECT_FALSE(removeRedirectionAnnotation(*client, "shop", "web-1"));
}

TEST(K8sAnnotateTest, NamesThatCouldEscapeThePathAreRefused) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  for (auto [ns, name] :
       std::vector<std::pair<std::string, std::string>>{{"shop", "../../namespaces/x"},
                                                        {"shop/x", "p"},
                                                        {"", "p"},
                                                        {"shop", ""},
                                                        {"shop", "p?dryRun=All"},
                                                        {"Shop", "p"}}) {
    Status s = setRedirectionAnnotation(*client, ns, name);
    EXPECT_FALSE(s) << ns << "/" << name;
    EXPECT_EQ(s.error().code, EINVAL);
  }
  EXPECT_TRUE(server->requests().empty());
}

}  // namespace
}  // namespace nodemesh::k8s
