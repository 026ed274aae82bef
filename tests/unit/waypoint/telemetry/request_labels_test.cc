#include "waypoint/telemetry/request_labels.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using testing::cartRequest;
using testing::Mesh;

std::map<std::string, std::string> labelsOf(const RequestRecord& r) {
  RequestLabelScratch scratch;
  const RequestLabelValues values = requestLabelValues(r, scratch);
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < kRequestLabelCount; ++i) {
    out[std::string(kRequestLabelNames[i])] = std::string(values[i]);
  }
  return out;
}

TEST(RequestLabelsTest, KnownWorkloadToServiceCarriesEveryIstioLabel) {
  Mesh mesh;
  const std::map<std::string, std::string> expected = {
      {"reporter", "waypoint"},
      {"source_workload", "frontend"},
      {"source_canonical_service", "frontend"},
      {"source_canonical_revision", "v1"},
      {"source_workload_namespace", "shop"},
      {"source_principal", "spiffe://cluster.local/ns/shop/sa/frontend"},
      {"source_app", "frontend"},
      {"source_version", "v1"},
      {"source_cluster", "cluster1"},
      {"destination_workload", "cart-v1"},
      {"destination_workload_namespace", "shop"},
      {"destination_principal", "spiffe://cluster.local/ns/shop/sa/cart"},
      {"destination_app", "cart"},
      {"destination_version", "v1"},
      {"destination_service", "cart.shop.svc.cluster.local"},
      {"destination_canonical_service", "cart"},
      {"destination_canonical_revision", "v1"},
      {"destination_service_name", "cart"},
      {"destination_service_namespace", "shop"},
      {"destination_cluster", "cluster1"},
      {"request_protocol", "http"},
      {"response_code", "200"},
      {"grpc_response_status", ""},
      {"response_flags", "-"},
      {"connection_security_policy", "mutual_tls"},
  };
  EXPECT_EQ(labelsOf(cartRequest(mesh)), expected);
}

TEST(RequestLabelsTest, NamesAreIstiosWaypointLabelsInOrder) {
  // istio/proxy testdata/metric/server_waypoint_proxy_request_total.yaml.tmpl, in order.
  EXPECT_EQ(kRequestLabelNames.front(), "reporter");
  EXPECT_EQ(kRequestLabelNames[9], "destination_workload");
  EXPECT_EQ(kRequestLabelNames[14], "destination_service");
  EXPECT_EQ(kRequestLabelNames[21], "response_code");
  EXPECT_EQ(kRequestLabelNames.back(), "connection_security_policy");
}

TEST(RequestLabelsTest, UnknownClientHasUnknownSourceButItsProvenPrincipal) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.source_workload = nullptr;
  r.source_principal = "spiffe://other.domain/ns/x/sa/y";
  auto l = labelsOf(r);
  for (const char* name :
       {"source_workload", "source_canonical_service", "source_canonical_revision",
        "source_workload_namespace", "source_app", "source_version", "source_cluster"}) {
    EXPECT_EQ(l[name], "unknown") << name;
  }
  EXPECT_EQ(l["source_principal"], "spiffe://other.domain/ns/x/sa/y");
  EXPECT_EQ(l["destination_workload"], "cart-v1");
}

TEST(RequestLabelsTest, PlaintextClientHasNoPrincipalAndPolicyNone) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.mutual_tls = false;
  auto l = labelsOf(r);
  EXPECT_EQ(l["source_principal"], "unknown");
  EXPECT_EQ(l["connection_security_policy"], "none");
}

TEST(RequestLabelsTest, NoUpstreamIsUnknownDestinationWithCodeAndFlags) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.destination_workload = nullptr;
  r.destination_principal = "";
  r.destination_service = nullptr;
  r.response_code = 503;
  r.response_flags = {ResponseFlag::kUpstreamRetryLimitExceeded,
                      ResponseFlag::kUpstreamConnectionFailure};
  auto l = labelsOf(r);
  EXPECT_EQ(l["destination_workload"], "unknown");
  EXPECT_EQ(l["destination_principal"], "unknown");
  EXPECT_EQ(l["destination_service"], "unknown");
  EXPECT_EQ(l["destination_service_name"], "unknown");
  EXPECT_EQ(l["destination_canonical_revision"], "unknown");
  EXPECT_EQ(l["response_code"], "503");
  EXPECT_EQ(l["response_flags"], "UF,URX");  // Envoy's order, not the order of setting
}

TEST(RequestLabelsTest, GrpcRequestIsProtocolGrpcWithItsStatus) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.grpc = true;
  r.http_version = HttpVersion::kHttp2;
  r.grpc_status = 14;  // UNAVAILABLE
  auto l = labelsOf(r);
  EXPECT_EQ(l["request_protocol"], "grpc");
  EXPECT_EQ(l["grpc_response_status"], "14");
  r.grpc_status = 0;
  EXPECT_EQ(labelsOf(r)["grpc_response_status"], "0");
}

TEST(RequestLabelsTest, NoResponseIsCodeZero) {
  Mesh mesh;
  RequestRecord r = cartRequest(mesh);
  r.response_code = 0;
  r.response_flags = {ResponseFlag::kDownstreamConnectionTermination};
  auto l = labelsOf(r);
  EXPECT_EQ(l["response_code"], "0");
  EXPECT_EQ(l["response_flags"], "DC");
}

TEST(ResponseFlagsTest, ShortCodesAreEnvoys) {
  EXPECT_EQ(ResponseFlags().toString(), "-");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kNoRouteFound}).toString(), "NR");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kNoHealthyUpstream}).toString(), "UH");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kUpstreamRequestTimeout}).toString(), "UT");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kUpstreamConnectionTermination}).toString(), "UC");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kRateLimited}).toString(), "RL");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kUnauthorizedExternalService}).toString(), "UAEX");
  EXPECT_EQ(ResponseFlags({ResponseFlag::kDownstreamRemoteReset}).toString(), "DR");
  ResponseFlags f;
  f.set(ResponseFlag::kDownstreamConnectionTermination);
  f.set(ResponseFlag::kNoHealthyUpstream);
  EXPECT_TRUE(f.has(ResponseFlag::kNoHealthyUpstream));
  EXPECT_FALSE(f.has(ResponseFlag::kNoRouteFound));
  EXPECT_EQ(f.toString(), "UH,DC");
}

}  // namespace
}  // namespace nodemesh::waypoint
