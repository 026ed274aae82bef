#pragma once

// Istio's request metrics as the waypoint reports them (reporter="waypoint"), with Istio's names,
// labels (request_labels.h) and Envoy's histogram buckets, so that Kiali and the Istio dashboards
// read nodemesh's waypoint as they read Istio's:
//   istio_requests_total                 counter
//   istio_request_duration_milliseconds  histogram, milliseconds
//   istio_request_bytes                  histogram, request body bytes
//   istio_response_bytes                 histogram, response body bytes
// plus nodemesh_waypoint_requests_unrecorded_total: requests not counted because the series
// limit was reached (a label explosion must not take the waypoint's memory).
//
// record() runs once per request on every worker thread. Series live in 16 shards chosen by the
// label hash, each a mutex and a hash map from the label tuple to the series' counters. The
// lookup takes views of the labels (no string is built for a label set seen before), so a
// request costs one label hash, one shard lock and a few additions; only a new label set copies
// its strings. A scrape copies each shard's counters under its lock and sorts and formats
// outside it.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "telemetry/prometheus_text.h"
#include "waypoint/telemetry/request_labels.h"
#include "waypoint/telemetry/request_record.h"

namespace nodemesh::waypoint {

// Envoy's default histogram buckets (Stats::HistogramSettingsImpl / supportedBuckets), which
// Istio's Envoy proxies and waypoints use for all three histograms (durations in ms, sizes in
// bytes). Mixer-era Istio (<= 1.4) had 1, 10, ..., 10^7 for sizes; its telemetry v2 does not.
inline constexpr std::array<double, 19> kIstioBuckets = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

class RequestMetrics {
 public:
  struct Options {
    std::vector<double> duration_buckets_ms{kIstioBuckets.begin(), kIstioBuckets.end()};
    std::vector<double> size_buckets{kIstioBuckets.begin(), kIstioBuckets.end()};
    // Label sets kept at most; requests with a new label set beyond it are not recorded and
    // counted in nodemesh_waypoint_requests_unrecorded_total.
    size_t max_series = 100000;
  };

  RequestMetrics() : RequestMetrics(Options{}) {}
  // Bucket bounds must be ascending.
  explicit RequestMetrics(Options options);

  // Counts `r` in its series. Thread-safe.
  void record(const RequestRecord& r);

  struct Histogram {
    // counts[i]: observations in (bounds[i-1], bounds[i]]; the last one above every bound.
    std::vector<uint64_t> counts;
    double sum = 0;
  };
  struct Series {
    std::shared_ptr<const RequestLabels> labels;  // shared with the live series
    uint64_t requests = 0;
    Histogram duration_ms;
    Histogram request_bytes;
    Histogram response_bytes;
  };
  // A copy, sorted by labels.
  std::vector<Series> series() const;
  uint64_t unrecorded() const { return unrecorded_.load(std::memory_order_relaxed); }
  const Options& options() const { return options_; }

  // The four Istio families and the unrecorded counter.
  void write(telemetry::PrometheusText& out) const;

 private:
  // A stored series key with its hash; the lookup key is a view with the same hash.
  struct StoredKey {
    size_t hash;
    std::shared_ptr<const RequestLabels> labels;
  };
  struct ViewKey {
    size_t hash;
    const RequestLabelValues* values;
  };
  struct KeyHash {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
    size_t operator()(const StoredKey& k) const { return k.hash; }
    size_t operator()(const ViewKey& k) const { return k.hash; }
  };
  struct KeyEqual {
    using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
    bool operator()(const StoredKey& a, const StoredKey& b) const;
    bool operator()(const ViewKey& a, const StoredKey& b) const;
    bool operator()(const StoredKey& a, const ViewKey& b) const { return (*this)(b, a); }
  };
  struct Counters {
    uint64_t requests = 0;
    Histogram duration_ms;
    Histogram request_bytes;
    Histogram response_bytes;
  };
  static constexpr size_t kShards = 16;
  // Own cache lines, so that workers recording into different shards do not share one.
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::unordered_map<StoredKey, Counters, KeyHash, KeyEqual> series;
  };

  Options options_;
  std::array<Shard, kShards> shards_;
  std::atomic<size_t> series_count_{0};
  std::atomic<uint64_t> unrecorded_{0};
};

}  // namespace nodemesh::waypoint
