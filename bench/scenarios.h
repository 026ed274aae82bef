#pragma once

// The measurements. Each scenario drives one client tool in the client pod against the mode's
// endpoint and returns its figures, keyed by metric (see kMetrics). Figures that describe the
// tunnel's own cost (CPU, memory) come from /proc of the mode's tunnel processes: utime + stime
// deltas for CPU, VmRSS for memory, summed or maxed over the two sides as each metric says.

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/bench_env.h"
#include "bench/modes.h"

namespace nodemesh::bench {

// metric key -> value of one run.
using Figures = std::map<std::string, double>;

struct MetricInfo {
  const char* key;
  const char* scenario;
  const char* label;
  const char* unit;
  bool higher_is_better;
  bool cost;  // a cost of the tunnel processes: no value for direct
  // A figure of the L7 hop (the waypoint or a peer's L7 proxy): no value without one.
  bool proxy = false;
};

inline constexpr MetricInfo kMetrics[] = {
    {"throughput_1", "throughput", "Throughput, 1 stream (iperf3)", "Gbit/s", true, false},
    {"throughput_4", "throughput", "Throughput, 4 streams (iperf3 -P 4)", "Gbit/s", true, false},
    {"latency_64_p50", "latency", "Round trip 64 B, p50 (sockperf)", "us", false, false},
    {"latency_64_p99", "latency", "Round trip 64 B, p99", "us", false, false},
    {"latency_64_p999", "latency", "Round trip 64 B, p99.9", "us", false, false},
    {"latency_1k_p50", "latency", "Round trip 1 KiB, p50", "us", false, false},
    {"latency_1k_p99", "latency", "Round trip 1 KiB, p99", "us", false, false},
    {"latency_1k_p999", "latency", "Round trip 1 KiB, p99.9", "us", false, false},
    {"throughput_1_vcpu", "throughput", "Throughput, 1 stream: tunnel vCPU, both sides", "vCPU",
     false, true},
    {"conn_rate", "conn-rate", "New connections per second (64 B echo each)", "conn/s", true,
     false},
    {"conn_rate_vcpu", "conn-rate", "New connections: tunnel vCPU, both sides", "vCPU", false,
     true},
    {"conn_p50_us", "conn-rate", "Connection (connect + echo + close) p50", "us", false, false},
    {"idle_vcpu_total", "http", "Tunnel vCPU without traffic, both sides", "vCPU", false, true},
    {"rest_rss_side", "http", "Tunnel RSS without traffic, larger side", "MB", false, true},
    {"http_vcpu_side", "http", "HTTP 1 KiB at 1,000 req/s: vCPU, busier side", "vCPU", false, true},
    {"http_vcpu_total", "http", "HTTP 1 KiB at 1,000 req/s: vCPU, both sides", "vCPU", false, true},
    {"http_rss_side", "http", "HTTP 1 KiB at 1,000 req/s: RSS, larger side", "MB", false, true},
    {"http_p50_us", "http", "HTTP 1 KiB at 1,000 req/s: latency p50", "us", false, false},
    {"http_p99_us", "http", "HTTP 1 KiB at 1,000 req/s: latency p99", "us", false, false},
    {"idle_kib_per_conn", "idle", "Memory per idle connection, both sides", "KiB", false, true},
    {"idle_rss_total", "idle", "RSS with the idle connections open, both sides", "MB", false, true},
    {"idle_open_s", "idle", "Time to open the idle connections (128 at a time)", "s", false, true},
    {"idle_close_s", "idle", "Time until the tunnel is quiet after they close", "s", false, true},
    // The waypoint benchmark (l7-h1: HTTP/1.1 keep-alive, l7-h2: HTTP/2), 1 KiB responses; the
    // maximum in a scenario of its own (-max), on a freshly started mode.
    {"l7_h1_max_rps", "l7-h1-max", "HTTP/1.1 maximum (h2load --h1, 16 connections)", "req/s", true,
     false},
    {"l7_h1_rps_per_core", "l7-h1-max", "HTTP/1.1 maximum: requests/s per L7 proxy core", "req/s",
     true, true, true},
    {"l7_h1_max_proxy_vcpu", "l7-h1-max", "HTTP/1.1 maximum: L7 proxy vCPU", "vCPU", false, true,
     true},
    {"l7_h1_p50_us", "l7-h1", "HTTP/1.1 at 1,000 req/s: latency p50", "us", false, false},
    {"l7_h1_p99_us", "l7-h1", "HTTP/1.1 at 1,000 req/s: latency p99", "us", false, false},
    {"l7_h1_proxy_vcpu", "l7-h1", "HTTP/1.1 at 1,000 req/s: L7 proxy vCPU", "vCPU", false, true,
     true},
    {"l7_h1_proxy_rss", "l7-h1", "HTTP/1.1 at 1,000 req/s: L7 proxy RSS", "MB", false, true, true},
    {"l7_h1_total_vcpu", "l7-h1", "HTTP/1.1 at 1,000 req/s: vCPU of every mesh process", "vCPU",
     false, true},
    {"l7_h2_max_rps", "l7-h2-max", "HTTP/2 maximum (h2load, 4 connections x 16 streams)", "req/s",
     true, false},
    {"l7_h2_rps_per_core", "l7-h2-max", "HTTP/2 maximum: requests/s per L7 proxy core", "req/s",
     true, true, true},
    {"l7_h2_max_proxy_vcpu", "l7-h2-max", "HTTP/2 maximum: L7 proxy vCPU", "vCPU", false, true,
     true},
    {"l7_h2_p50_us", "l7-h2", "HTTP/2 at 1,000 req/s: latency p50", "us", false, false},
    {"l7_h2_p99_us", "l7-h2", "HTTP/2 at 1,000 req/s: latency p99", "us", false, false},
    {"l7_h2_proxy_vcpu", "l7-h2", "HTTP/2 at 1,000 req/s: L7 proxy vCPU", "vCPU", false, true,
     true},
    {"l7_h2_proxy_rss", "l7-h2", "HTTP/2 at 1,000 req/s: L7 proxy RSS", "MB", false, true, true},
    {"l7_h2_total_vcpu", "l7-h2", "HTTP/2 at 1,000 req/s: vCPU of every mesh process", "vCPU",
     false, true},
};

// Scenario names, in the order they run. `latency` runs first in a round, for every mode in
// turn (nodemesh_bench.cc); the others run mode by mode: the cost figures of `http` are taken on
// a freshly started tunnel, and `idle` grows the tunnels and runs last (of the modes that run
// them; the L7 scenarios run on the modes that the others do not, see modeRuns()).
inline constexpr const char* kScenarioOrder[] = {"http",       "latency", "conn-rate",
                                                 "throughput", "idle",    "l7-h1",
                                                 "l7-h1-max",  "l7-h2",   "l7-h2-max"};

const MetricInfo* findMetric(const std::string& key);

struct ProcSample {
  double cpu_seconds = 0;  // utime + stime
  double rss_mb = 0;       // VmRSS
};
// nullopt when the process is gone.
std::optional<ProcSample> sampleProcess(pid_t pid);

class ScenarioRunner {
 public:
  ScenarioRunner(Environment& env, Mode& mode) : env_(env), mode_(mode) {}

  // Runs one scenario by name; throws sim::HarnessError when it could not measure.
  Figures run(const std::string& scenario);
  // What the scenarios run so far noted beside their figures (kept in the report's facts), and
  // forgotten here.
  std::map<std::string, std::string> takeFacts() { return std::exchange(facts_, {}); }

 private:
  Figures http();
  Figures latency();
  Figures connRate();
  Figures throughput();
  Figures idle();
  // l7-h1 / l7-h2: latency, CPU and memory at a fixed 1,000 requests/s.
  Figures l7(HttpVersion version);
  // l7-h1-max / l7-h2-max: the most requests/s h2load gets through (closed loop) and the L7
  // proxy's CPU meanwhile.
  Figures l7Max(HttpVersion version);
  // h2load closed loop for Options::l7_max_window after a warm-up: req/s and the CPU of
  // `pids` (summed) over the window.
  std::pair<double, double> h2loadMax(HttpVersion version, const std::vector<pid_t>& pids);
  // HTTP/2 at Options::http_rate with h2load --rps: latency percentiles (us) from its per-request
  // log, the first Options::http_warmup left out.
  sim::Process& startH2Rate(const std::string& log_path, std::chrono::milliseconds total);

  std::vector<ProcSample> sampleTunnel();
  std::vector<ProcSample> samplePids(const std::vector<pid_t>& pids);
  // Waits until the tunnel processes (summed) use at most one clock tick of CPU in a 200 ms
  // window, so that the next scenario does not measure this one's aftermath; returns the
  // seconds waited (to the end of the first quiet window). Throws after `limit`.
  double waitTunnelQuiet(std::chrono::seconds limit);
  // CPU seconds the tunnel processes (summed) used between two samples.
  static double cpuSeconds(const std::vector<ProcSample>& before,
                           const std::vector<ProcSample>& after);
  // vCPU of the tunnel processes (summed) between two samples `seconds` apart.
  static double tunnelVcpu(const std::vector<ProcSample>& before,
                           const std::vector<ProcSample>& after, double seconds);

  // Keeps http-load's slowest requests (its `done` event) as the fact `key`: "<us>@<due ms>"
  // each, slowest first, so that a report shows whether a p99 came from one stall or many.
  void noteSlowest(const std::string& key, const nlohmann::json& done);

  Environment& env_;
  Mode& mode_;
  std::map<std::string, std::string> facts_;
};

}  // namespace nodemesh::bench
