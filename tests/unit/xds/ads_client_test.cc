#include "xds/ads_client.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "istio/security/authorization.pb.h"
#include "istio/workload/workload.pb.h"
#include "tests/unit/xds/xds_test_util.h"

namespace nodemesh::xds {
namespace {

using testing::eventually;
using testing::IstiodFixture;
using testing::IstiodStandin;
using testing::kWait;
using testing::writeFile;

// Holds what it was given by name; refuses resources named "bad-*" and payloads that are not an
// Address.
class FakeHandler final : public ResourceHandler {
 public:
  std::vector<Rejection> apply(
      const envoy::service::discovery::v3::DeltaDiscoveryResponse& response) override {
    const std::lock_guard lock(mutex_);
    ++responses_;
    std::vector<Rejection> rejections;
    for (const auto& name : response.removed_resources()) held_.erase(name);
    for (const auto& resource : response.resources()) {
      istio::workload::Address address;
      if (resource.name().rfind("bad-", 0) == 0) {
        rejections.push_back({resource.name(), resource.name() + ": refused by the test"});
      } else if (!resource.resource().UnpackTo(&address)) {
        rejections.push_back({resource.name(), resource.name() + ": not an Address"});
      } else {
        held_[resource.name()] = resource.version();
      }
    }
    return rejections;
  }

  std::map<std::string, std::string> held() const {
    const std::lock_guard lock(mutex_);
    return held_;
  }
  int responses() const {
    const std::lock_guard lock(mutex_);
    return responses_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> held_;
  int responses_ = 0;
};

istio::workload::Address workload(const std::string& uid) {
  istio::workload::Address address;
  address.mutable_workload()->set_uid(uid);
  address.mutable_workload()->set_name(uid);
  return address;
}

class AdsClientTest : public IstiodFixture {
 protected:
  void startClient(AdsClientOptions options) {
    auto created = AdsClient::create(
        std::move(options), {{kAddressTypeUrl, &addresses_}, {kAuthorizationTypeUrl, &policies_}});
    ASSERT_TRUE(created) << created.error().message;
    client_ = std::move(*created);
    client_->start();
  }
  void startClient() { startClient(clientOptions()); }

  bool synced() const { return client_->waitUntilSynced(std::chrono::steady_clock::now() + kWait); }

  std::vector<IstiodStandin::Request> requestsOf(int stream) const {
    std::vector<IstiodStandin::Request> out;
    for (auto& request : istiod_->requests()) {
      if (request.stream == stream) out.push_back(request);
    }
    return out;
  }

  FakeHandler addresses_;
  FakeHandler policies_;
  std::unique_ptr<AdsClient> client_;
};

TEST_F(AdsClientTest, NodeIdAndMetadataAreZtunnels) {
  NodeInfo node;
  node.instance_ip = "10.0.0.7";
  node.pod_name = "ztunnel-x1";
  node.pod_namespace = "istio-system";
  EXPECT_EQ(node.nodeId(),
            "ztunnel~10.0.0.7~ztunnel-x1.istio-system~istio-system.svc.cluster.local");

  // NOLINTBEGIN(concurrency-mt-unsafe): single-threaded at this point
  ::setenv("INSTANCE_IP", "10.1.2.3", 1);
  ::setenv("POD_NAME", "ztunnel-q", 1);
  ::setenv("POD_NAMESPACE", "kube-system", 1);
  ::setenv("NODE_NAME", "worker-3", 1);
  ::setenv("ISTIO_META_CLUSTER_ID", "east", 1);
  ::setenv("ISTIO_META_DNS_CAPTURE", "true", 1);
  const NodeInfo env = NodeInfo::fromEnvironment();
  for (const char* name : {"INSTANCE_IP", "POD_NAME", "POD_NAMESPACE", "NODE_NAME",
                           "ISTIO_META_CLUSTER_ID", "ISTIO_META_DNS_CAPTURE"}) {
    ::unsetenv(name);
  }
  // NOLINTEND(concurrency-mt-unsafe)
  EXPECT_EQ(env.nodeId(), "ztunnel~10.1.2.3~ztunnel-q.kube-system~kube-system.svc.cluster.local");
  EXPECT_EQ(env.node_name, "worker-3");
  EXPECT_EQ(env.cluster_id, "east");
  EXPECT_EQ(env.metadata.at("DNS_CAPTURE"), "true");
  EXPECT_EQ(env.metadata.at("CLUSTER_ID"), "east");
}

TEST_F(AdsClientTest, FirstRequestsAreWildcardWithTheNodeAndHeaders) {
  startIstiod("token-1");
  startClient();
  ASSERT_TRUE(synced());
  // Two subscriptions, two ACKs.
  ASSERT_TRUE(istiod_->waitForRequests([](const auto& all) { return all.size() >= 4; }, kWait));

  const auto first = requestsOf(1);
  ASSERT_EQ(first.size(), 4U);
  EXPECT_EQ(first[0].type_url, kAddressTypeUrl);
  EXPECT_EQ(first[1].type_url, kAuthorizationTypeUrl);
  for (int i = 0; i < 2; ++i) {
    const auto& request = first[static_cast<size_t>(i)];
    EXPECT_TRUE(request.subscribe.empty());
    EXPECT_TRUE(request.response_nonce.empty());
    EXPECT_TRUE(request.initial_resource_versions.empty());
    EXPECT_EQ(request.node_id,
              "ztunnel~10.199.0.5~ztunnel-abcde.istio-system~istio-system.svc.cluster.local");
    const std::map<std::string, std::string> expected = {
        {"NAME", "ztunnel-abcde"}, {"NAMESPACE", "istio-system"}, {"INSTANCE_IPS", "10.199.0.5"},
        {"NODE_NAME", "node-a"},   {"CLUSTER_ID", "cluster-a"},   {"ISTIO_VERSION", "1.24.0"},
        {"DNS_CAPTURE", "true"}};
    EXPECT_EQ(request.node_metadata, expected);
  }
  const auto streams = istiod_->streams();
  ASSERT_EQ(streams.size(), 1U);
  EXPECT_EQ(streams[0].authorization, "Bearer token-1");
  EXPECT_EQ(streams[0].cluster_id, "cluster-a");
  EXPECT_TRUE(client_->status().connected);
  EXPECT_EQ(client_->status().connects, 1U);
}

TEST_F(AdsClientTest, AcksEveryResponseWithItsNonce) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, "uid-1", workload("uid-1"));
  startClient();
  ASSERT_TRUE(synced());
  istiod_->setResource(kAddressTypeUrl, "uid-2", workload("uid-2"));
  istiod_->setResource(kAddressTypeUrl, "uid-1", workload("uid-1"));
  ASSERT_TRUE(eventually([&] { return client_->status().acks == 4; }));
  // 2 subscriptions + 4 ACKs, as the server saw them.
  ASSERT_TRUE(istiod_->waitForRequests([](const auto& all) { return all.size() >= 6; }, kWait));

  const auto responses = istiod_->responses();
  ASSERT_EQ(responses.size(), 4U);
  const auto requests = istiod_->requests();
  for (const auto& response : responses) {
    int acks = 0;
    for (const auto& request : requests) {
      if (request.response_nonce == response.nonce) {
        EXPECT_FALSE(request.nack);
        EXPECT_EQ(request.type_url, response.type_url);
        ++acks;
      }
    }
    EXPECT_EQ(acks, 1) << response.nonce;
  }
  const auto status = client_->status();
  EXPECT_EQ(status.types.at(kAddressTypeUrl).acked_nonce, responses.back().nonce);
  EXPECT_EQ(status.types.at(kAddressTypeUrl).acked_version, responses.back().version);
  EXPECT_EQ(status.types.at(kAddressTypeUrl).resources, 2U);
  EXPECT_EQ(status.types.at(kAuthorizationTypeUrl).acks, 1U);
  EXPECT_EQ(status.nacks, 0U);
  EXPECT_FALSE(status.last_nack);
  const auto held = addresses_.held();
  EXPECT_EQ(held.size(), 2U);
  EXPECT_EQ(held.at("uid-1"), "3");  // the third change on the server
}

TEST_F(AdsClientTest, NacksInvalidResourcesAndAppliesTheValidOnes) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, "uid-1", workload("uid-1"));
  istiod_->setResource(kAddressTypeUrl, "bad-2", workload("bad-2"));
  istiod_->setRawResource(kAddressTypeUrl, "uid-3", "type.googleapis.com/other.Thing", "x");
  startClient();
  ASSERT_TRUE(eventually([&] { return client_->status().nacks == 1; }));
  ASSERT_TRUE(istiod_->waitForRequests(
      [](const auto& all) {
        return std::any_of(all.begin(), all.end(), [](const auto& each) { return each.nack; });
      },
      kWait));

  // One response held all three: it is NACKed with both reasons, and uid-1 applied anyway.
  EXPECT_EQ(addresses_.held().count("uid-1"), 1U);
  EXPECT_EQ(addresses_.held().size(), 1U);
  const auto responses = istiod_->responses();
  ASSERT_FALSE(responses.empty());
  const auto& address_response = responses.front();
  ASSERT_EQ(address_response.type_url, kAddressTypeUrl);
  ASSERT_EQ(address_response.names.size(), 3U);
  bool nacked = false;
  for (const auto& request : istiod_->requests()) {
    if (request.response_nonce != address_response.nonce) continue;
    nacked = request.nack;
    EXPECT_EQ(request.error_message, "bad-2: refused by the test; uid-3: not an Address");
  }
  EXPECT_TRUE(nacked);
  const auto status = client_->status();
  ASSERT_TRUE(status.last_nack);
  EXPECT_EQ(status.last_nack->type_url, kAddressTypeUrl);
  EXPECT_EQ(status.last_nack->nonce, address_response.nonce);
  EXPECT_EQ(status.last_nack->reason, "bad-2: refused by the test; uid-3: not an Address");
  EXPECT_FALSE(status.types.at(kAddressTypeUrl).synced);  // never ACKed yet
  // The policies' (empty) response comes after the addresses' and is ACKed.
  EXPECT_TRUE(eventually([&] { return client_->status().types.at(kAuthorizationTypeUrl).synced; }));

  // A fix is ACKed; after a reconnect the client names only what it accepted.
  istiod_->setResource(kAddressTypeUrl, "uid-3", workload("uid-3"));
  ASSERT_TRUE(synced());
  istiod_->stop();
  ASSERT_TRUE(istiod_->restart());
  ASSERT_TRUE(istiod_->waitForRequests(
      [](const auto& requests) {
        for (const auto& request : requests) {
          if (request.stream == 2 && request.type_url == kAddressTypeUrl) return true;
        }
        return false;
      },
      kWait));
  const auto again = requestsOf(2);
  ASSERT_FALSE(again.empty());
  const std::map<std::string, std::string> held = {{"uid-1", "1"}, {"uid-3", "4"}};
  EXPECT_EQ(again[0].initial_resource_versions, held);
}

TEST_F(AdsClientTest, RemovedResourcesAreRemoved) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, "uid-1", workload("uid-1"));
  istiod_->setResource(kAddressTypeUrl, "uid-2", workload("uid-2"));
  startClient();
  ASSERT_TRUE(synced());
  ASSERT_EQ(addresses_.held().size(), 2U);
  istiod_->removeResource(kAddressTypeUrl, "uid-1");
  ASSERT_TRUE(eventually([&] { return addresses_.held().size() == 1; }));
  EXPECT_EQ(addresses_.held().count("uid-2"), 1U);
  ASSERT_TRUE(eventually([&] { return client_->status().acks == 3; }));
  EXPECT_EQ(client_->status().types.at(kAddressTypeUrl).resources, 1U);
}

TEST_F(AdsClientTest, ReconnectsAfterARestartNamingWhatItHolds) {
  startIstiod();
  istiod_->setResource(kAddressTypeUrl, "uid-1", workload("uid-1"));
  istiod_->setResource(kAddressTypeUrl, "uid-2", workload("uid-2"));
  startClient();
  ASSERT_TRUE(synced());

  istiod_->stop();
  ASSERT_TRUE(eventually([&] { return !client_->status().connected; }));
  // Changes while the client is away: one removal, one new resource.
  istiod_->removeResource(kAddressTypeUrl, "uid-2");
  istiod_->setResource(kAddressTypeUrl, "uid-3", workload("uid-3"));
  ASSERT_TRUE(istiod_->restart());
  ASSERT_TRUE(eventually([&] {
    return addresses_.held().count("uid-3") == 1 && addresses_.held().count("uid-2") == 0;
  }));
  EXPECT_EQ(addresses_.held().size(), 2U);

  int stream = 0;
  for (const auto& request : istiod_->requests()) stream = std::max(stream, request.stream);
  // The second subscription (policies) may still be on its way when the addresses are applied.
  ASSERT_TRUE(istiod_->waitForRequests(
      [&](const std::vector<IstiodStandin::Request>& all) {
        return std::count_if(all.begin(), all.end(), [&](const IstiodStandin::Request& r) {
                 return r.stream == stream;
               }) >= 2;
      },
      std::chrono::seconds(5)));
  const auto again = requestsOf(stream);
  ASSERT_GE(again.size(), 2U);
  const std::map<std::string, std::string> held = {{"uid-1", "1"}, {"uid-2", "2"}};
  EXPECT_EQ(again[0].initial_resource_versions, held);
  EXPECT_TRUE(again[1].initial_resource_versions.empty());  // no policies held
  // The server sent only what changed: uid-3, and uid-2 as removed.
  bool seen = false;
  for (const auto& response : istiod_->responses()) {
    if (response.stream != stream || response.type_url != kAddressTypeUrl) continue;
    seen = true;
    EXPECT_EQ(response.names, std::vector<std::string>{"uid-3"});
    EXPECT_EQ(response.removed, std::vector<std::string>{"uid-2"});
  }
  EXPECT_TRUE(seen);
  const auto status = client_->status();
  EXPECT_GE(status.connects, 2U);
  EXPECT_GE(status.disconnects, 1U);
  EXPECT_TRUE(eventually([&] { return client_->status().connected; }));
}

TEST_F(AdsClientTest, BacksOffWhileTheServerIsDown) {
  startIstiod();
  startClient();
  ASSERT_TRUE(synced());
  istiod_->stop();
  ASSERT_TRUE(eventually([&] { return !client_->status().connected; }));
  const uint64_t before = client_->status().connects;
  // 10, 20, 40, ... ms: about 7 attempts in 1.2 s (a fixed 10 ms retry would make ~100).
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  const uint64_t attempts = client_->status().connects - before;
  EXPECT_GE(attempts, 3U);
  EXPECT_LE(attempts, 12U);
  EXPECT_FALSE(client_->status().last_error.empty());

  // Back after the server returns, and the backoff starts over after a response.
  ASSERT_TRUE(istiod_->restart());
  ASSERT_TRUE(eventually([&] { return client_->status().connected; }));
}

TEST_F(AdsClientTest, RereadsTheTokenForEveryStream) {
  startIstiod("token-2");  // the file holds token-1: refused
  startClient();
  ASSERT_TRUE(eventually([&] { return istiod_->streams().size() >= 2; }));
  ASSERT_TRUE(eventually([&] { return !client_->status().last_error.empty(); }));
  EXPECT_FALSE(client_->status().connected);
  EXPECT_NE(client_->status().last_error.find("gRPC status 16"), std::string::npos)
      << client_->status().last_error;
  EXPECT_TRUE(istiod_->streams()[0].refused);

  writeFile(tokenFile(), "token-2\n");
  ASSERT_TRUE(synced());
  const auto streams = istiod_->streams();
  EXPECT_EQ(streams.front().authorization, "Bearer token-1");
  EXPECT_EQ(streams.back().authorization, "Bearer token-2");
  EXPECT_FALSE(streams.back().refused);
}

TEST_F(AdsClientTest, AMissingTokenFileIsReportedAndRetried) {
  startIstiod();
  auto options = clientOptions();
  options.connection.token_file = tokenFile() + ".missing";
  startClient(options);
  ASSERT_TRUE(eventually([&] { return !client_->status().last_error.empty(); }));
  EXPECT_NE(client_->status().last_error.find(".missing"), std::string::npos);
  EXPECT_TRUE(istiod_->streams().empty());
}

TEST_F(AdsClientTest, RejectsBadSubscriptions) {
  startIstiod();
  EXPECT_FALSE(AdsClient::create(clientOptions(), {}));
  EXPECT_FALSE(AdsClient::create(clientOptions(), {{kAddressTypeUrl, nullptr}}));
  EXPECT_FALSE(AdsClient::create(clientOptions(),
                                 {{kAddressTypeUrl, &addresses_}, {kAddressTypeUrl, &policies_}}));
  auto options = clientOptions();
  options.connection.root_cert_file = rootFile() + ".missing";
  EXPECT_FALSE(AdsClient::create(options, {{kAddressTypeUrl, &addresses_}}));
}

TEST_F(AdsClientTest, StopEndsTheStreamAndNoHandlerRunsAfter) {
  startIstiod();
  startClient();
  ASSERT_TRUE(synced());
  client_->stop();
  const int responses = addresses_.responses();
  istiod_->setResource(kAddressTypeUrl, "uid-9", workload("uid-9"));
  EXPECT_TRUE(eventually([&] { return istiod_->openStreams() == 0; }));
  EXPECT_EQ(addresses_.responses(), responses);
  EXPECT_FALSE(client_->status().connected);
  client_->stop();  // idempotent
}

}  // namespace
}  // namespace nodemesh::xds
