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

}  // namespace
}  // namespace nodemesh::telemetry
