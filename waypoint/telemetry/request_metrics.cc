#include "waypoint/telemetry/request_metrics.h"

#include <algorithm>
#include <functional>
#include <string_view>

namespace nodemesh::waypoint {

namespace {

size_t hashLabels(const RequestLabelValues& values) {
  // A boost-style combine of each value's hash: label values are short and few, and the
  // combine keeps ("ab", "c") and ("a", "bc") apart.
  size_t h = 0;
  for (std::string_view v : values) {
    h ^= std::hash<std::string_view>{}(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  }
  return h;
}

void observe(RequestMetrics::Histogram& h, std::span<const double> bounds, double value) {
  // Prometheus buckets are "less than or equal": a value on a bound counts in that bound's
  // bucket, hence the first bound >= value.
  const auto it = std::lower_bound(bounds.begin(), bounds.end(), value);
  ++h.counts[static_cast<size_t>(it - bounds.begin())];
  h.sum += value;
}

RequestMetrics::Histogram emptyHistogram(const std::vector<double>& bounds) {
  RequestMetrics::Histogram h;
  h.counts.assign(bounds.size() + 1, 0);
  return h;
}

}  // namespace

bool RequestMetrics::KeyEqual::operator()(const StoredKey& a, const StoredKey& b) const {
  return a.hash == b.hash && *a.labels == *b.labels;
}

bool RequestMetrics::KeyEqual::operator()(const ViewKey& a, const StoredKey& b) const {
  if (a.hash != b.hash) return false;
  for (size_t i = 0; i < kRequestLabelCount; ++i) {
    if ((*a.values)[i] != (*b.labels)[i]) return false;
  }
  return true;
}

RequestMetrics::RequestMetrics(Options options) : options_(std::move(options)) {}

void RequestMetrics::record(const RequestRecord& r) {
  RequestLabelScratch scratch;
  const RequestLabelValues values = requestLabelValues(r, scratch);
  const ViewKey view{hashLabels(values), &values};
  const double duration_ms = static_cast<double>(r.duration.count()) / 1000.0;

  Shard& shard = shards_[view.hash % kShards];
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.series.find(view);
  if (it == shard.series.end()) {
    // A new label set: the only path that allocates.
    if (series_count_.fetch_add(1, std::memory_order_relaxed) >= options_.max_series) {
      series_count_.fetch_sub(1, std::memory_order_relaxed);
      unrecorded_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto labels = std::make_shared<RequestLabels>();
    for (size_t i = 0; i < kRequestLabelCount; ++i) (*labels)[i] = values[i];
    Counters fresh{0, emptyHistogram(options_.duration_buckets_ms),
                   emptyHistogram(options_.size_buckets), emptyHistogram(options_.size_buckets)};
    it = shard.series.emplace(StoredKey{view.hash, std::move(labels)}, std::move(fresh)).first;
  }
  Counters& c = it->second;
  ++c.requests;
  observe(c.duration_ms, options_.duration_buckets_ms, duration_ms);
  observe(c.request_bytes, options_.size_buckets, static_cast<double>(r.request_bytes));
  observe(c.response_bytes, options_.size_buckets, static_cast<double>(r.response_bytes));
}

std::vector<RequestMetrics::Series> RequestMetrics::series() const {
  std::vector<Series> out;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const auto& [key, c] : shard.series) {
      out.push_back(
          Series{key.labels, c.requests, c.duration_ms, c.request_bytes, c.response_bytes});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Series& a, const Series& b) { return *a.labels < *b.labels; });
  return out;
}

void RequestMetrics::write(telemetry::PrometheusText& out) const {
  const std::vector<Series> all = series();
  // Each series' label text once, for all four families.
  std::vector<std::string> label_text;
  label_text.reserve(all.size());
  for (const Series& s : all) {
    telemetry::Labels labels;
    labels.reserve(kRequestLabelCount);
    for (size_t i = 0; i < kRequestLabelCount; ++i) {
      labels.emplace_back(kRequestLabelNames[i], (*s.labels)[i]);
    }
    label_text.push_back(telemetry::PrometheusText::formatLabels(labels));
  }

  out.family("istio_requests_total", "counter", "The total number of requests");
  for (size_t i = 0; i < all.size(); ++i) {
    out.sampleFormatted("istio_requests_total", label_text[i], all[i].requests);
  }
  struct Family {
    const char* name;
    const char* help;
    Histogram Series::*histogram;
    const std::vector<double>* bounds;
  };
  const std::array<Family, 3> families = {{
      {"istio_request_duration_milliseconds", "The duration of requests in milliseconds",
       &Series::duration_ms, &options_.duration_buckets_ms},
      {"istio_request_bytes", "The sizes of request bodies in bytes", &Series::request_bytes,
       &options_.size_buckets},
      {"istio_response_bytes", "The sizes of response bodies in bytes", &Series::response_bytes,
       &options_.size_buckets},
  }};
  for (const Family& f : families) {
    out.family(f.name, "histogram", f.help);
    for (size_t i = 0; i < all.size(); ++i) {
      const Histogram& h = all[i].*f.histogram;
      out.histogram(f.name, label_text[i], *f.bounds, h.counts, h.sum);
    }
  }
  out.family("nodemesh_waypoint_requests_unrecorded_total", "counter",
             "Requests left out of the Istio request metrics because their label set would have "
             "exceeded the series limit");
  out.sample("nodemesh_waypoint_requests_unrecorded_total", {}, unrecorded());
}

}  // namespace nodemesh::waypoint
