#include "k8s/client.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "tests/support/temp_dir.h"
#include "tests/unit/k8s/k8s_test_util.h"

namespace nodemesh::k8s {
namespace {

using testing::clientFor;
using testing::json;
using testing::namespaceJson;
using testing::podJson;
using testing::Standin;
using testing::startStandin;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(K8sClientTest, GetsObjectsOverTlsWithTheBearerToken) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  server->upsert(Standin::Kind::kNamespaces, namespaceJson("shop", {{"team", "a"}}));
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto ns = client->getJson("/api/v1/namespaces/shop");
  ASSERT_TRUE(ns) << ns.error().message;
  EXPECT_EQ((*ns)["metadata"]["labels"]["team"], "a");
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests[0].status, 200);
}

TEST(K8sClientTest, ApiErrorsCarryTheStatusCodeAndTheApiMessage) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto missing = client->getJson("/api/v1/namespaces/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message,
            "GET /api/v1/namespaces/nope: 404 Not Found: namespaces \"nope\" not found");

  auto bad = client->get("/api/v1/pods?fieldSelector=" + queryEscape("spec.schedulerName=x"));
  ASSERT_TRUE(bad) << bad.error().message;
  EXPECT_EQ(bad->status, 400);
  EXPECT_TRUE(contains(apiError("GET", "/api/v1/pods", *bad).message,
                       "400 Bad Request: \"spec.schedulerName\" is not a known field selector"));
}

TEST(K8sClientTest, ApiErrorWithoutAStatusBodyShowsTheBody) {
  Error e = apiError("PATCH", "/x", Response{503, "upstream connect error"});
  EXPECT_EQ(e.message, "PATCH /x: 503 Service Unavailable: upstream connect error");
}

TEST(K8sClientTest, ABadTokenIs401AndTheRotatedTokenFileIsReadOnTheNextRequest) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  server->setAcceptedToken("rotated");
  auto refused = client->get("/api/v1/namespaces");
  ASSERT_TRUE(refused) << refused.error().message;
  EXPECT_EQ(refused->status, 401);
  EXPECT_EQ(apiError("GET", "/api/v1/namespaces", *refused).message,
            "GET /api/v1/namespaces: 401 Unauthorized: Unauthorized");

  server->writeTokenFile("rotated");  // as kubelet rotates a projected token
  auto accepted = client->getJson("/api/v1/namespaces");
  EXPECT_TRUE(accepted) << accepted.error().message;
}

TEST(K8sClientTest, AServerCertificateFromAnotherCaIsRefused) {
  auto server = startStandin();
  auto other = startStandin();
  ASSERT_TRUE(server && other);
  ClientConfig config = server->clientConfig();
  config.ca_file = other->caFile();
  auto client = Client::create(config);
  ASSERT_TRUE(client) << client.error().message;
  auto result = (*client)->get("/api/v1/namespaces");
  ASSERT_FALSE(result);
  EXPECT_TRUE(contains(result.error().message, "TLS: the server's certificate is not trusted"))
      << result.error().message;
  EXPECT_TRUE(server->requests().empty());
}

TEST(K8sClientTest, ConnectionRefusedIsAnError) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  ClientConfig config = server->clientConfig();
  config.server = "https://127.0.0.1:1";
  auto client = Client::create(config);
  ASSERT_TRUE(client) << client.error().message;
  auto result = (*client)->get("/api/v1/pods");
  ASSERT_FALSE(result);
  EXPECT_TRUE(contains(result.error().message, "GET /api/v1/pods: ")) << result.error().message;
}

TEST(K8sClientTest, CreateRefusesBadConfiguration) {
  nodemesh::testing::TempDir dir;
  std::string ca = dir.path() + "/ca.crt";
  std::string token = dir.path() + "/token";
  std::ofstream(ca) << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::ofstream(token) << "abc\n";
  std::string empty_token = dir.path() + "/empty";
  std::ofstream(empty_token) << "\n";
  std::string not_pem = dir.path() + "/notpem";
  std::ofstream(not_pem) << "hello";

  struct Case {
    std::string server, ca_file, token_file, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"http://127.0.0.1:6443", ca, token, "must start with https://"},
           {"https://", ca, token, "no host"},
           {"https://host:0", ca, token, "bad port"},
           {"https://host:65536", ca, token, "bad port"},
           {"https://host:6443x", ca, token, "bad port"},
           {"https://host/api", ca, token, "a path is not supported"},
           {"https://[::1", ca, token, "unterminated ["},
           {"https://host", dir.path() + "/missing", token, "CA file"},
           {"https://host", not_pem, token, "no PEM certificate"},
           {"https://host", ca, dir.path() + "/missing", "token file"},
           {"https://host", ca, empty_token, "empty"},
       }) {
    ClientConfig config;
    config.server = c.server;
    config.ca_file = c.ca_file;
    config.token_file = c.token_file;
    auto client = Client::create(config);
    ASSERT_FALSE(client) << c.server;
    EXPECT_TRUE(contains(client.error().message, c.expected))
        << c.server << ": " << client.error().message;
  }
  ClientConfig ok;
  ok.server = "https://[fd00::1]:6443";
  ok.ca_file = ca;
  ok.token_file = token;
  EXPECT_TRUE(Client::create(ok));
}

TEST(K8sClientTest, InClusterConfigComesFromTheEnvironmentAndTheServiceAccount) {
  // setenv in a test: no other thread of this binary reads the environment meanwhile.
  ::unsetenv("KUBERNETES_SERVICE_HOST");  // NOLINT(concurrency-mt-unsafe)
  auto outside = inClusterConfig("/nonexistent");
  ASSERT_FALSE(outside);
  EXPECT_TRUE(contains(outside.error().message, "KUBERNETES_SERVICE_HOST"));

  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);  // NOLINT(concurrency-mt-unsafe)
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);        // NOLINT(concurrency-mt-unsafe)
  auto v4 = inClusterConfig("/sa");
  ASSERT_TRUE(v4) << v4.error().message;
  EXPECT_EQ(v4->server, "https://10.96.0.1:443");
  EXPECT_EQ(v4->token_file, "/sa/token");
  EXPECT_EQ(v4->ca_file, "/sa/ca.crt");
  EXPECT_EQ(inClusterConfig()->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");

  ::setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);  // NOLINT(concurrency-mt-unsafe)
  EXPECT_EQ(inClusterConfig("/sa")->server, "https://[fd00::1]:443");
  ::unsetenv("KUBERNETES_SERVICE_HOST");  // NOLINT(concurrency-mt-unsafe)
  ::unsetenv("KUBERNETES_SERVICE_PORT");  // NOLINT(concurrency-mt-unsafe)
}

TEST(K8sClientTest, QueryEscapeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(queryEscape("spec.nodeName=node-1"), "spec.nodeName%3Dnode-1");
  EXPECT_EQ(queryEscape("a b&c/~_"), "a%20b%26c%2F~_");
}

TEST(K8sClientTest, WatchDeliversEachLineAndShutdownInterruptsIt) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  std::mutex mutex;
  std::vector<std::string> lines;
  auto done = std::async(std::launch::async, [&] {
    return client->watch(
        "/api/v1/pods?watch=true&resourceVersion=" + std::to_string(server->resourceVersion()),
        std::chrono::seconds(10), [&](std::string_view line) {
          std::lock_guard lock(mutex);
          lines.emplace_back(line);
          return true;
        });
  });
  ASSERT_TRUE(server->waitForWatches(1, std::chrono::seconds(2)));
  uint64_t rv = server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a"));
  server->injectWatchLine("not json at all");
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard lock(mutex);
      if (lines.size() >= 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto start = std::chrono::steady_clock::now();
  client->shutdown();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  auto result = done.get();
  ASSERT_FALSE(result);
  EXPECT_TRUE(contains(result.error().message, "shut down")) << result.error().message;
  std::lock_guard lock(mutex);
  ASSERT_EQ(lines.size(), 2U);
  auto event = json::parse(lines[0]);
  EXPECT_EQ(event["type"], "ADDED");
  EXPECT_EQ(event["object"]["metadata"]["resourceVersion"], std::to_string(rv));
  EXPECT_EQ(lines[1], "not json at all");
  // Later requests fail at once.
  EXPECT_FALSE(client->get("/api/v1/pods"));
}

TEST(K8sClientTest, AWatchThatEndsByTimeoutSecondsEndsCleanly) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a"));
  int count = 0;
  auto result = client->watch("/api/v1/pods?watch=1&timeoutSeconds=0", std::chrono::seconds(5),
                              [&](std::string_view) {
                                ++count;
                                return true;
                              });
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(count, 1);  // the ADDED of the existing pod (no resourceVersion given)
}

TEST(K8sClientTest, ADroppedWatchIsAnError) {
  auto server = startStandin();
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  auto done = std::async(std::launch::async, [&] {
    return client->watch("/api/v1/pods?watch=true&resourceVersion=1", std::chrono::seconds(10),
                         [](std::string_view) { return true; });
  });
  ASSERT_TRUE(server->waitForWatches(1, std::chrono::seconds(2)));
  server->dropWatches();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  auto result = done.get();
  EXPECT_FALSE(result);
}

TEST(K8sClientTest, ARefusedWatchReturnsItsStatus) {
  auto server = startStandin({.token = "t", .gone_as_http_status = true});
  ASSERT_TRUE(server);
  auto client = clientFor(*server);
  ASSERT_TRUE(client);
  server->upsert(Standin::Kind::kPods, podJson("shop", "a", "node-a"));
  server->compact();
  bool called = false;
  auto result = client->watch("/api/v1/pods?watch=true&resourceVersion=5", std::chrono::seconds(5),
                              [&](std::string_view) {
                                called = true;
                                return true;
                              });
  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->status, 410);
  EXPECT_FALSE(called);
  EXPECT_TRUE(
      contains(apiError("GET", "w", *result).message, "410 Gone: too old resource version"));
}

}  // namespace
}  // namespace nodemesh::k8s
