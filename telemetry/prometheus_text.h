#pragma once

// The Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): what every Prometheus
// server and Istio's dashboards read. One writer per scrape; families are written whole.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nodemesh::telemetry {

inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

class PrometheusText {
 public:
  // `# HELP` and `# TYPE` lines; type is "counter", "gauge" or "histogram". Counter names end in
  // _total, as Istio's do (istio_tcp_connections_opened_total).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const Labels& labels, uint64_t value);
  void sample(std::string_view name, const Labels& labels, double value);
  // With labels already formatted by formatLabels() (a series written in several families).
  void sampleFormatted(std::string_view name, std::string_view formatted_labels, uint64_t value);
  // One histogram's series, as Prometheus client libraries write them: `<name>_bucket` per upper
  // bound with the cumulative count (`le` added to the labels, the last one "+Inf"), then
  // `<name>_sum` and `<name>_count`. counts[i] holds the observations in (bounds[i-1], bounds[i]],
  // counts.back() those above the last bound: counts.size() == bounds.size() + 1.
  void histogram(std::string_view name, std::string_view formatted_labels,
                 std::span<const double> bounds, std::span<const uint64_t> counts, double sum);
  // `{a="1",b="x"}`, or "" without labels.
  static std::string formatLabels(const Labels& labels);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

  // Label values escape backslash, double quote and newline; HELP text backslash and newline.
  static std::string escapeLabelValue(std::string_view value);
  static std::string escapeHelp(std::string_view help);

 private:
  std::string out_;
};

}  // namespace nodemesh::telemetry
