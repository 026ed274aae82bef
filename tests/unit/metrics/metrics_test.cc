#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "agent/access_log.h"
#include "agent/metrics/agent_metrics.h"
#include "agent/metrics/tcp_metrics.h"
#include "config/local/local_config.h"
#include "telemetry/prometheus_text.h"

namespace nodemesh::agent::metrics {
namespace {

model::SnapshotPtr example() {
  auto r =
      nodemesh::config::loadLocalConfigFile(std::string(NODEMESH_EXAMPLES_DIR) + "/two-nodes.yaml");
  EXPECT_TRUE(r.ok()) << r.problemsText();
  return r.snapshot;
}

SocketAddress addr(const char* text) {
  return SocketAddress::parse(text).value();
}

// frontend (node1) -> cart-v1 (node2), HBONE, as agent1 reports it.
tunnel::ConnectionRecord outboundHbone() {
  tunnel::ConnectionRecord r;
  r.direction = tunnel::Direction::kOutbound;
  r.pod = "shop/frontend-7d9f";
  r.src = addr("127.0.0.1:40290");
  r.dst = addr("10.244.2.20:8080");
  r.transport = tunnel::Transport::kHbone;
  r.src_identity = "spiffe://cluster.local/ns/shop/sa/frontend";
  r.dst_identity = "spiffe://cluster.local/ns/shop/sa/cart";
  r.bytes_to_dst = 100;
  r.bytes_from_dst = 250;
  return r;
}

std::map<std::string, std::string> asMap(const TcpLabels& labels) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < labels.size(); ++i) out[std::string(kTcpLabelNames[i])] = labels[i];
  return out;
}

TEST(TcpMetricsTest, OutboundHboneLabelsAreIstios) {
  auto snap = example();
  auto l = asMap(tcpLabels(snap.get(), outboundHbone(), false));
  EXPECT_EQ(l["reporter"], "source");
  EXPECT_EQ(l["source_workload"], "frontend-7d9f");
  EXPECT_EQ(l["source_workload_namespace"], "shop");
  EXPECT_EQ(l["source_canonical_service"], "frontend");
  EXPECT_EQ(l["source_canonical_revision"], "v1");
  EXPECT_EQ(l["source_app"], "frontend");
  EXPECT_EQ(l["source_principal"], "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(l["destination_workload"], "cart-v1-5c2a");
  EXPECT_EQ(l["destination_canonical_service"], "cart");
  EXPECT_EQ(l["destination_version"], "v1");
  EXPECT_EQ(l["destination_principal"], "spiffe://cluster.local/ns/shop/sa/cart");
  // cart-v1 backs exactly one service: it labels the connection.
  EXPECT_EQ(l["destination_service"], "cart.shop.svc.cluster.local");
  EXPECT_EQ(l["destination_service_name"], "cart");
  EXPECT_EQ(l["destination_service_namespace"], "shop");
  EXPECT_EQ(l["request_protocol"], "tcp");
  EXPECT_EQ(l["response_flags"], "-");
  EXPECT_EQ(l["connection_security_policy"], "mutual_tls");
  EXPECT_EQ(l["source_cluster"], "unknown");
}

TEST(TcpMetricsTest, InboundPlaintextFromOutsideIsUnknownAndDeniedIsDeny) {
  auto snap = example();
  tunnel::ConnectionRecord r;
  r.direction = tunnel::Direction::kInbound;
  r.pod = "shop/cart-v1-5c2a";
  r.src = addr("10.244.1.40:5555");  // in no config
  r.dst = addr("10.244.2.20:8080");
  r.denied = true;
  r.policy = "";
  auto open = asMap(tcpLabels(snap.get(), r, false));
  EXPECT_EQ(open["reporter"], "destination");
  EXPECT_EQ(open["source_workload"], "unknown");
  EXPECT_EQ(open["source_principal"], "unknown");
  EXPECT_EQ(open["destination_workload"], "cart-v1-5c2a");
  EXPECT_EQ(open["connection_security_policy"], "unknown");
  EXPECT_EQ(open["response_flags"], "-");  // at open, as ztunnel
  auto closed = asMap(tcpLabels(snap.get(), r, true));
  EXPECT_EQ(closed["response_flags"], "DENY");
  // A refused connect before any byte: CONNECT.
  tunnel::ConnectionRecord failed = outboundHbone();
  failed.bytes_to_dst = failed.bytes_from_dst = 0;
  failed.error = "connect 10.244.2.20:8080: Connection refused";
  EXPECT_EQ(asMap(tcpLabels(snap.get(), failed, true))["response_flags"], "CONNECT");
  // The destination refused the HBONE CONNECT with 401: denied.
  failed.error = "HBONE CONNECT answered 401";
  EXPECT_EQ(asMap(tcpLabels(snap.get(), failed, true))["response_flags"], "DENY");
  // Without a snapshot everything about workloads is unknown.
  EXPECT_EQ(asMap(tcpLabels(nullptr, outboundHbone(), false))["destination_workload"], "unknown");
}

TEST(TcpMetricsTest, ServiceConnectionIsLabelledWithTheService) {
  auto snap = example();
  auto r = outboundHbone();
  r.dst = addr("10.244.1.21:8080");  // cart-v2, picked for the VIP
  r.dst_service = "shop/cart.shop.svc.cluster.local";
  auto l = asMap(tcpLabels(snap.get(), r, true));
  EXPECT_EQ(l["destination_service"], "cart.shop.svc.cluster.local");
  EXPECT_EQ(l["destination_workload"], "cart-v2-9b1e");
  EXPECT_EQ(l["destination_canonical_revision"], "v2");
}

TEST(TcpMetricsTest, CountsOpensClosesAndBytesPerLabelSet) {
  auto snap = example();
  TcpMetrics m;
  for (int i = 0; i < 3; ++i) m.recordOpen(tcpLabels(snap.get(), outboundHbone(), false));
  const auto r = outboundHbone();
  for (int i = 0; i < 2; ++i)
    m.recordClose(tcpLabels(snap.get(), r, true), r.bytes_to_dst, r.bytes_from_dst);
  auto series = m.series();
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].opened, 3u);
  EXPECT_EQ(series[0].closed, 2u);
  EXPECT_EQ(series[0].received_bytes, 200u);
  EXPECT_EQ(series[0].sent_bytes, 500u);
  telemetry::PrometheusText out;
  m.write(out);
  const std::string& text = out.text();
  EXPECT_NE(text.find("# TYPE istio_tcp_connections_opened_total counter"), std::string::npos);
  EXPECT_TRUE(
      std::regex_search(text, std::regex(R"(istio_tcp_connections_opened_total\{reporter="source",)"
                                         R"(source_workload="frontend-7d9f",[^}]*\} 3)")))
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(istio_tcp_connections_closed_total\{.*\} 2)")));
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(istio_tcp_received_bytes_total\{.*\} 200)")));
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(istio_tcp_sent_bytes_total\{.*\} 500)")));
}

TEST(AgentMetricsTest, RendersNodemeshSeries) {
  AgentMetricsInput in;
  TcpMetrics tcp;
  in.tcp = &tcp;
  in.capture_counters = std::map<std::string, uint64_t>{{"out_captured", 12}, {"in_steered", 3}};
  in.tunnel.tls_handshakes_client = 4;
  in.tunnel.hbone_pool_size = 2;
  in.tunnel.busy_poll_hits = 7;
  in.tunnel.busy_poll_misses = 5;
  in.enrolled_pods = 3;
  in.ready = true;
  in.certificates.push_back(
      {"spiffe://cluster.local/ns/shop/sa/frontend",
       std::chrono::system_clock::time_point(std::chrono::seconds(1900000000))});
  std::string text = renderAgentMetrics(in);
  const std::string expiry =
      "nodemesh_certificate_expiration_timestamp_seconds{identity=\"spiffe://cluster.local/ns/"
      "shop/sa/frontend\"} 1900000000\n";
  EXPECT_NE(text.find(expiry), std::string::npos) << text;
  for (const char* line :
       {"nodemesh_enrolled_pods 3\n", "nodemesh_ready 1\n",
        "nodemesh_capture_decisions_total{reason=\"out_captured\"} 12\n",
        "nodemesh_tls_handshakes_total{role=\"client\"} 4\n", "nodemesh_hbone_pool_connections 2\n",
        "nodemesh_tunnel_busy_polls_total{result=\"hit\"} 7\n",
        "nodemesh_tunnel_busy_polls_total{result=\"miss\"} 5\n",
        "# TYPE istio_tcp_connections_opened_total counter\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  // Every sample line is "name{labels} value" or "name value".
  std::istringstream lines(text);
  for (std::string l; std::getline(lines, l);) {
    if (l.empty() || l[0] == '#') continue;
    EXPECT_TRUE(std::regex_match(l, std::regex(R"([a-z_]+(\{.*\})? [0-9.e+-]+)"))) << l;
  }
}

// ---- access log ----

TEST(AccessLogTest, TextLineKeepsTheExistingFieldsAndAddsWorkloadsAndVerdict) {
  auto snap = example();
  auto r = outboundHbone();
  r.duration = std::chrono::milliseconds(12);
  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795000000123));
  std::string line = formatAccessLog(r, resolvePeers(*snap, r), AccessLogFormat::kText, now);
  EXPECT_EQ(line,
            "2026-11-18T11:06:40.123Z access direction=outbound pod=shop/frontend-7d9f "
            "src=127.0.0.1:40290 dst=10.244.2.20:8080 bytes_to_dst=100 bytes_from_dst=250 "
            "duration_ms=12 result=ok transport=hbone "
            "src_identity=spiffe://cluster.local/ns/shop/sa/frontend "
            "dst_identity=spiffe://cluster.local/ns/shop/sa/cart "
            "src_workload=shop/frontend-7d9f dst_workload=shop/cart-v1-5c2a");

  tunnel::ConnectionRecord in;
  in.direction = tunnel::Direction::kInbound;
  in.pod = "shop/cart-v1-5c2a";
  in.src = addr("10.244.2.30:4000");
  in.dst = addr("10.244.2.20:8080");
  in.error = "denied: no ALLOW policy matched (shop/cart-allow-frontend)";
  in.denied = true;
  in.reason = "no ALLOW policy matched (shop/cart-allow-frontend)";
  line = formatAccessLog(in, resolvePeers(*snap, in), AccessLogFormat::kText, now);
  EXPECT_NE(line.find(" result=\"denied: no ALLOW policy matched (shop/cart-allow-frontend)\" "
                      "transport=tcp src_workload=legacy/batch-0 dst_workload=shop/cart-v1-5c2a "
                      "verdict=deny policy=- reason=\"no ALLOW policy matched "
                      "(shop/cart-allow-frontend)\""),
            std::string::npos)
      << line;
  in.denied = false;
  in.error.clear();
  in.policy = "shop/cart-allow-frontend";
  line = formatAccessLog(in, resolvePeers(*snap, in), AccessLogFormat::kText, now);
  EXPECT_TRUE(line.ends_with("verdict=allow policy=shop/cart-allow-frontend")) << line;
}

TEST(AccessLogTest, JsonLineHasEveryField) {
  auto snap = example();
  auto r = outboundHbone();
  r.dst_service = "shop/cart.shop.svc.cluster.local";
  r.service_addr = addr("10.96.0.20:80");
  r.attempts = 1;
  std::string line = formatAccessLog(r, resolvePeers(*snap, r), AccessLogFormat::kJson,
                                     std::chrono::system_clock::now());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["direction"], "outbound");
  EXPECT_EQ(j["src_workload"], "shop/frontend-7d9f");
  EXPECT_EQ(j["dst_workload"], "shop/cart-v1-5c2a");
  EXPECT_EQ(j["dst_service"], "shop/cart.shop.svc.cluster.local");
  EXPECT_EQ(j["service_addr"], "10.96.0.20:80");
  EXPECT_EQ(j["bytes_to_dst"], 100);
  EXPECT_EQ(j["bytes_from_dst"], 250);
  EXPECT_EQ(j["result"], "ok");
  EXPECT_TRUE(j["verdict"].is_null());  // outbound: the destination decides
  EXPECT_TRUE(j.contains("duration_ms"));
  EXPECT_TRUE(j.contains("time"));
  // Invalid UTF-8 in an error does not break the line.
  r.error = std::string("bad \xff byte");
  line = formatAccessLog(r, resolvePeers(*snap, r), AccessLogFormat::kJson,
                         std::chrono::system_clock::now());
  EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
}

TEST(AccessLogTest, TelemetryWritesOneLinePerClosedConnectionAndCountsOpens) {
  std::vector<std::string> lines;
  ConnectionTelemetry t(AccessLogFormat::kText,
                        [&](const std::string& line) { lines.push_back(line); });
  t.setSnapshot(example());
  t.onOpen(outboundHbone());
  EXPECT_TRUE(lines.empty());
  t.onClose(outboundHbone());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("dst=10.244.2.20:8080"), std::string::npos);
  auto series = t.tcpMetrics().series();
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].opened, 1u);
  EXPECT_EQ(series[0].closed, 1u);
}

}  // namespace
}  // namespace nodemesh::agent::metrics
