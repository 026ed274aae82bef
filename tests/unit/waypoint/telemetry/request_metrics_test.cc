#include "waypoint/telemetry/request_metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"
#include "tests/unit/waypoint/telemetry/telemetry_fixtures.h"

namespace nodemesh::waypoint {
namespace {

using std::chrono::microseconds;
using testing::cartRequest;
using testing::Mesh;

// The bucket index a value landed in, from a series' per-bucket counts.
std::vector<size_t> filledBuckets(const RequestMetrics::Histogram& h) {
  std::vector<size_t> out;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    for (uint64_t n = 0; n < h.counts[i]; ++n) out.push_back(i);
  }
  return out;
}

TEST(RequestMetricsTest, BucketsAreEnvoysDefaults) {
  const std::vector<double> envoy = {0.5,   1,      5,      10,      25,     50,    100,
                                     250,   500,    1000,   2500,    5000,   10000, 30000,
                                     60000, 300000, 600000, 1800000, 3600000};
  RequestMetrics m;
  EXPECT_EQ(m.options().duration_buckets_ms, envoy);
  EXPECT_EQ(m.options().size_buckets, envoy);
}

TEST(RequestMetricsTest, DurationOnABoundCountsInThatBoundsBucket) {
  Mesh mesh;
  RequestMetrics m;
  RequestRecord r = cartRequest(mesh);
  // bucket 0 is le=0.5, 1 is le=1, 2 is le=5, 18 is le=3600000, 19 is +Inf.
  for (int64_t us : {int64_t{0}, int64_t{500}, int64_t{501}, int64_t{1000}, int64_t{1001},
                     int64_t{3600000000}, int64_t{3600000001}}) {
    r.duration = microseconds(us);
    m.record(r);
  }
  auto series = m.series();
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].requests, 7u);
  EXPECT_EQ(filledBuckets(series[0].duration_ms), (std::vector<size_t>{0, 0, 1, 1, 2, 18, 19}));
  EXPECT_DOUBLE_EQ(series[0].duration_ms.sum, 0 + 0.5 + 0.501 + 1 + 1.001 + 3600000 + 3600000.001);
}

TEST(RequestMetricsTest, BodySizesOnABoundCountInThatBoundsBucket) {
  Mesh mesh;
  RequestMetrics m;
  RequestRecord r = cartRequest(mesh);
  for (uint64_t bytes : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{10}, uint64_t{11},
                         uint64_t{3600000}, uint64_t{3600001}}) {
    r.request_bytes = bytes;
    r.response_bytes = bytes * 2;
    m.record(r);
  }
  auto series = m.series();
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(filledBuckets(series[0].request_bytes), (std::vector<size_t>{0, 1, 2, 3, 4, 18, 19}));
  // 0, 2, 4, 20, 22, 7200000, 7200002
  EXPECT_EQ(filledBuckets(series[0].response_bytes), (std::vector<size_t>{0, 2, 2, 4, 4, 19, 19}));
  EXPECT_DOUBLE_EQ(series[0].request_bytes.sum, 0 + 1 + 2 + 10 + 11 + 3600000 + 3600001);
}

TEST(RequestMetricsTest, EachLabelSetIsOneSeries) {
  Mesh mesh;
  RequestMetrics m;
  RequestRecord ok = cartRequest(mesh);
  RequestRecord unavailable = cartRequest(mesh);
  unavailable.response_code = 503;
  unavailable.response_flags = {ResponseFlag::kNoHealthyUpstream};
  for (int i = 0; i < 3; ++i) m.record(ok);
  m.record(unavailable);
  // The path, user agent and ids are not labels: a different path is the same series.
  RequestRecord other_path = cartRequest(mesh);
  other_path.path = "/checkout";
  m.record(other_path);
  auto series = m.series();
  ASSERT_EQ(series.size(), 2u);
  // Sorted by labels: response_code "200" before "503".
  EXPECT_EQ((*series[0].labels)[21], "200");
  EXPECT_EQ(series[0].requests, 4u);
  EXPECT_EQ((*series[1].labels)[21], "503");
  EXPECT_EQ((*series[1].labels)[23], "UH");
  EXPECT_EQ(series[1].requests, 1u);
}

TEST(RequestMetricsTest, SeriesLimitCountsWhatItLeavesOut) {
  Mesh mesh;
  RequestMetrics::Options options;
  options.max_series = 1;
  RequestMetrics m(options);
  RequestRecord r = cartRequest(mesh);
  m.record(r);
  r.response_code = 404;
  m.record(r);
  m.record(r);
  r.response_code = 200;
  m.record(r);  // the existing series still counts
  auto series = m.series();
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].requests, 2u);
  EXPECT_EQ(m.unrecorded(), 2u);
  telemetry::PrometheusText out;
  m.write(out);
  EXPECT_NE(out.text().find("\nnodemesh_waypoint_requests_unrecorded_total 2\n"),
            std::string::npos);
}

TEST(RequestMetricsTest, ConcurrentRecordingLosesNothing) {
  Mesh mesh;
  RequestMetrics m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      RequestRecord r = cartRequest(mesh);
      r.response_code = t % 2 == 0 ? 200 : 500;
      for (int i = 0; i < kPerThread; ++i) m.record(r);
    });
  }
  for (auto& t : threads) t.join();
  auto series = m.series();
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].requests, uint64_t{kThreads / 2 * kPerThread});
  EXPECT_EQ(series[1].requests, uint64_t{kThreads / 2 * kPerThread});
}

// The label text of cartRequest(), in Istio's order.
constexpr const char* kCartLabels =
    "reporter=\"waypoint\",source_workload=\"frontend\",source_canonical_service=\"frontend\","
    "source_canonical_revision=\"v1\",source_workload_namespace=\"shop\","
    "source_principal=\"spiffe://cluster.local/ns/shop/sa/frontend\",source_app=\"frontend\","
    "source_version=\"v1\",source_cluster=\"cluster1\",destination_workload=\"cart-v1\","
    "destination_workload_namespace=\"shop\","
    "destination_principal=\"spiffe://cluster.local/ns/shop/sa/cart\",destination_app=\"cart\","
    "destination_version=\"v1\",destination_service=\"cart.shop.svc.cluster.local\","
    "destination_canonical_service=\"cart\",destination_canonical_revision=\"v1\","
    "destination_service_name=\"cart\",destination_service_namespace=\"shop\","
    "destination_cluster=\"cluster1\",request_protocol=\"http\",response_code=\"200\","
    "grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"";

TEST(RequestMetricsTest, TextFormatIsExact) {
  Mesh mesh;
  RequestMetrics::Options options;
  options.duration_buckets_ms = {1, 50};
  options.size_buckets = {100};
  RequestMetrics m(options);
  m.record(cartRequest(mesh));  // 12.5 ms, 0 bytes in, 512 bytes out
  telemetry::PrometheusText out;
  m.write(out);
  const std::string l = kCartLabels;
  const std::string expected =
      "# HELP istio_requests_total The total number of requests\n"
      "# TYPE istio_requests_total counter\n"
      "istio_requests_total{" +
      l +
      "} 1\n"
      "# HELP istio_request_duration_milliseconds The duration of requests in milliseconds\n"
      "# TYPE istio_request_duration_milliseconds histogram\n"
      "istio_request_duration_milliseconds_bucket{" +
      l +
      ",le=\"1\"} 0\n"
      "istio_request_duration_milliseconds_bucket{" +
      l +
      ",le=\"50\"} 1\n"
      "istio_request_duration_milliseconds_bucket{" +
      l +
      ",le=\"+Inf\"} 1\n"
      "istio_request_duration_milliseconds_sum{" +
      l +
      "} 12.5\n"
      "istio_request_duration_milliseconds_count{" +
      l +
      "} 1\n"
      "# HELP istio_request_bytes The sizes of request bodies in bytes\n"
      "# TYPE istio_request_bytes histogram\n"
      "istio_request_bytes_bucket{" +
      l +
      ",le=\"100\"} 1\n"
      "istio_request_bytes_bucket{" +
      l +
      ",le=\"+Inf\"} 1\n"
      "istio_request_bytes_sum{" +
      l +
      "} 0\n"
      "istio_request_bytes_count{" +
      l +
      "} 1\n"
      "# HELP istio_response_bytes The sizes of response bodies in bytes\n"
      "# TYPE istio_response_bytes histogram\n"
      "istio_response_bytes_bucket{" +
      l +
      ",le=\"100\"} 0\n"
      "istio_response_bytes_bucket{" +
      l +
      ",le=\"+Inf\"} 1\n"
      "istio_response_bytes_sum{" +
      l +
      "} 512\n"
      "istio_response_bytes_count{" +
      l +
      "} 1\n"
      "# HELP nodemesh_waypoint_requests_unrecorded_total Requests left out of the Istio request "
      "metrics because their label set would have exceeded the series limit\n"
      "# TYPE nodemesh_waypoint_requests_unrecorded_total counter\n"
      "nodemesh_waypoint_requests_unrecorded_total 0\n";
  EXPECT_EQ(out.text(), expected);
}

// promtool (Debian's prometheus package, scripts/install-deps.sh) parses the page as Prometheus
// does and lints it. Its only finding may be the one Istio's own name earns.
TEST(RequestMetricsTest, PromtoolAcceptsThePage) {
  const char* promtool = "/usr/bin/promtool";
  if (::access(promtool, X_OK) != 0) GTEST_SKIP() << promtool << " is not installed";
  Mesh mesh;
  RequestMetrics m;
  RequestRecord r = cartRequest(mesh);
  m.record(r);
  r.grpc = true;
  r.grpc_status = 2;
  r.source_workload = nullptr;
  r.source_principal = "spiffe://odd/\"quoted\"\\path\nline";  // escaped label value
  m.record(r);
  telemetry::PrometheusText out;
  m.write(out);
  const nodemesh::testing::TempDir dir;  // removed with the file
  const std::string path = dir.path() + "/waypoint_metrics.prom";
  std::ofstream(path) << out.text();
  const std::string cmd = std::string(promtool) + " check metrics < " + path + " 2>&1";
  // The test drives promtool itself: a command line is the simplest way to feed its stdin.
  FILE* p = ::popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c)
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) output += buf;
  const int status = ::pclose(p);
  // Exit 0: clean; 3: lint findings only; anything else (1: parse error) fails.
  ASSERT_TRUE(WIFEXITED(status)) << output;
  const int code = WEXITSTATUS(status);
  EXPECT_TRUE(code == 0 || code == 3) << "exit " << code << "\n" << output << "\n" << out.text();
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line,
              "istio_request_duration_milliseconds use base unit \"seconds\" instead of "
              "\"milliseconds\"")
        << "unexpected promtool finding";
  }
}

}  // namespace
}  // namespace nodemesh::waypoint
