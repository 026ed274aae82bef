#include "waypoint/telemetry/request_telemetry.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using testing::cartRequest;
using testing::Mesh;

std::map<std::string, std::string> asMap(const telemetry::TcpLabels& labels) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < labels.size(); ++i) {
    out[std::string(telemetry::kTcpLabelNames[i])] = labels[i];
  }
  return out;
}

PassthroughRecord passthrough(const Mesh& mesh) {
  PassthroughRecord r;
  r.source_workload = &mesh.frontend;
  r.source_principal = testing::kFrontendId;
  r.destination_service = &mesh.cart;
  r.destination_workload = &mesh.cart_v1;
  r.destination_principal = testing::kCartId;
  r.bytes_from_client = 100;
  r.bytes_to_client = 250;
  return r;
}

TEST(PassthroughMetricsTest, LabelsAreIstiosWithReporterWaypoint) {
  Mesh mesh;
  auto l = asMap(passthroughTcpLabels(passthrough(mesh), false));
  EXPECT_EQ(l["reporter"], "waypoint");
  EXPECT_EQ(l["source_workload"], "frontend");
  EXPECT_EQ(l["source_canonical_revision"], "v1");
  EXPECT_EQ(l["source_principal"], testing::kFrontendId);
  EXPECT_EQ(l["source_cluster"], "cluster1");
  EXPECT_EQ(l["destination_service"], "cart.shop.svc.cluster.local");
  EXPECT_EQ(l["destination_service_name"], "cart");
  EXPECT_EQ(l["destination_service_namespace"], "shop");
  EXPECT_EQ(l["destination_workload"], "cart-v1");
  EXPECT_EQ(l["destination_canonical_service"], "cart");
  EXPECT_EQ(l["destination_principal"], testing::kCartId);
  EXPECT_EQ(l["request_protocol"], "tcp");
  EXPECT_EQ(l["response_flags"], "-");
  EXPECT_EQ(l["connection_security_policy"], "mutual_tls");
}

TEST(PassthroughMetricsTest, FlagsOnlyAtCloseAndPlaintextHasNoPrincipal) {
  Mesh mesh;
  PassthroughRecord r = passthrough(mesh);
  r.response_flags = {ResponseFlag::kUpstreamConnectionFailure};
  r.mutual_tls = false;
  EXPECT_EQ(asMap(passthroughTcpLabels(r, false))["response_flags"], "-");
  auto closed = asMap(passthroughTcpLabels(r, true));
  EXPECT_EQ(closed["response_flags"], "UF");
  EXPECT_EQ(closed["source_principal"], "unknown");
  EXPECT_EQ(closed["connection_security_policy"], "none");
}

TEST(RequestTelemetryTest, CountsRequestsAndConnectionsAndLogsEachRequest) {
  Mesh mesh;
  std::mutex mu;
  std::vector<std::string> lines;
  RequestTelemetry t(AccessLogFormat::kText, [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(line);
  });
  t.onRequest(cartRequest(mesh));
  t.onRequest(cartRequest(mesh));
  t.onPassthroughOpen(passthrough(mesh));
  t.onPassthroughClose(passthrough(mesh));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].rfind("2026-11-18T11:06:40.123Z access reporter=waypoint method=GET", 0), 0u);
  ASSERT_EQ(t.requests().series().size(), 1u);
  EXPECT_EQ(t.requests().series()[0].requests, 2u);
  auto tcp = t.tcp().series();
  ASSERT_EQ(tcp.size(), 1u);
  EXPECT_EQ(tcp[0].opened, 1u);
  EXPECT_EQ(tcp[0].closed, 1u);
  EXPECT_EQ(tcp[0].received_bytes, 100u);
  EXPECT_EQ(tcp[0].sent_bytes, 250u);

  telemetry::PrometheusText out;
  t.writeMetrics(out);
  for (const char* family :
       {"# TYPE istio_requests_total counter\n",
        "# TYPE istio_request_duration_milliseconds histogram\n",
        "# TYPE istio_request_bytes histogram\n", "# TYPE istio_response_bytes histogram\n",
        "# TYPE istio_tcp_connections_opened_total counter\n",
        "# TYPE istio_tcp_connections_closed_total counter\n",
        "# TYPE istio_tcp_received_bytes_total counter\n",
        "# TYPE istio_tcp_sent_bytes_total counter\n"}) {
    EXPECT_NE(out.text().find(family), std::string::npos) << family;
  }
  EXPECT_NE(out.text().find("istio_tcp_received_bytes_total{reporter=\"waypoint\","),
            std::string::npos);
}

TEST(RequestTelemetryTest, NoSinkNoLog) {
  Mesh mesh;
  RequestTelemetry t(AccessLogFormat::kJson, nullptr);
  t.onRequest(cartRequest(mesh));  // must not call an empty std::function
  EXPECT_EQ(t.requests().series().size(), 1u);
}

}  // namespace
}  // namespace nodemesh::waypoint
