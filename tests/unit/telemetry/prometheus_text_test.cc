#include "telemetry/prometheus_text.h"

#include <gtest/gtest.h>

namespace nodemesh::telemetry {
namespace {

TEST(PrometheusTextTest, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(PrometheusText::escapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(PrometheusText::escapeHelp("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
  PrometheusText out;
  out.family("m_total", "counter", "Help text");
  out.sample("m_total", {{"a", "1"}, {"b", "x\"y"}}, uint64_t{42});
  out.sample("m_total", {}, uint64_t{7});
  out.family("g", "gauge", "A gauge");
  out.sample("g", {}, 1.5);
  EXPECT_EQ(out.text(),
            "# HELP m_total Help text\n# TYPE m_total counter\n"
            "m_total{a=\"1\",b=\"x\\\"y\"} 42\nm_total 7\n"
            "# HELP g A gauge\n# TYPE g gauge\ng 1.5\n");
}

TEST(PrometheusTextTest, HistogramBucketsAreCumulativeWithLeAddedToTheLabels) {
  PrometheusText out;
  const double bounds[] = {0.5, 1, 3600000};
  const uint64_t counts[] = {1, 0, 2, 3};  // 1 at <=0.5, 2 in (1, 3600000], 3 above
  out.family("h", "histogram", "A histogram");
  out.histogram("h", PrometheusText::formatLabels({{"a", "x"}}), bounds, counts, 12.25);
  out.histogram("h", "", bounds, counts, 0);
  EXPECT_EQ(out.text(),
            "# HELP h A histogram\n# TYPE h histogram\n"
            "h_bucket{a=\"x\",le=\"0.5\"} 1\n"
            "h_bucket{a=\"x\",le=\"1\"} 1\n"
            "h_bucket{a=\"x\",le=\"3600000\"} 3\n"
            "h_bucket{a=\"x\",le=\"+Inf\"} 6\n"
            "h_sum{a=\"x\"} 12.25\n"
            "h_count{a=\"x\"} 6\n"
            "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"3600000\"} 3\n"
            "h_bucket{le=\"+Inf\"} 6\nh_sum 0\nh_count 6\n");
}

}  // namespace
}  // namespace nodemesh::telemetry
