// nm-waypoint-telemetry-micro: what the waypoint's per-request telemetry costs on a worker
// thread, without sockets: recording a request in Istio's request metrics (the label-set lookup
// and histogram updates; one hot label set, and a few hundred spread over the shards), with 1
// and 2 threads contending, plus the label views, the access log line and the trace context
// alone. Google Benchmark; run it with --benchmark_filter=... and compare before/after a change
// on the same machine.

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "model/service.h"
#include "model/workload.h"
#include "waypoint/telemetry/access_log.h"
#include "waypoint/telemetry/request_labels.h"
#include "waypoint/telemetry/request_metrics.h"
#include "waypoint/telemetry/trace_context.h"

namespace nodemesh::waypoint {
namespace {

struct Fixture {
  model::Workload client;
  model::Workload server;
  model::Service service;
  RequestRecord record;

  Fixture() {
    client.name = "frontend-7d9f";
    client.namespace_name = "shop";
    client.workload_name = "frontend";
    client.canonical_name = "frontend";
    client.canonical_revision = "v1";
    client.cluster_id = "cluster1";
    server = client;
    server.name = "cart-v1-5c2a";
    server.workload_name = "cart-v1";
    server.canonical_name = "cart";
    service.name = "cart";
    service.namespace_name = "shop";
    service.hostname = "cart.shop.svc.cluster.local";
    record.source_workload = &client;
    record.source_principal = "spiffe://cluster.local/ns/shop/sa/frontend";
    record.destination_service = &service;
    record.destination_workload = &server;
    record.destination_principal = "spiffe://cluster.local/ns/shop/sa/cart";
    record.upstream_host = SocketAddress::parse("10.244.2.20:8080").value();
    record.source_address = SocketAddress::parse("10.244.1.10:40290").value();
    record.method = "GET";
    record.path = "/cart?id=7";
    record.authority = "cart.shop.svc.cluster.local:80";
    record.user_agent = "curl/8.5.0";
    record.request_id = "5f1c8a4e-2b7d-4c1a-9e3f-0a1b2c3d4e5f";
    record.response_code = 200;
    record.response_bytes = 512;
    record.duration = std::chrono::microseconds(12500);
  }
};

RequestMetrics& sharedMetrics() {
  static RequestMetrics metrics;
  return metrics;
}

void recordHotSeries(benchmark::State& state) {
  Fixture f;
  RequestMetrics& m = sharedMetrics();
  for (auto _ : state) m.record(f.record);
}
BENCHMARK(recordHotSeries)->Threads(1)->Threads(2);

// 300 label sets (response codes x source workloads), cycled: lookups spread over the shards.
void recordManySeries(benchmark::State& state) {
  std::vector<model::Workload> clients(30);
  Fixture f;
  for (size_t i = 0; i < clients.size(); ++i) {
    clients[i] = f.client;
    clients[i].workload_name = "client-" + std::to_string(i);
  }
  RequestMetrics& m = sharedMetrics();
  size_t i = 0;
  for (auto _ : state) {
    f.record.source_workload = &clients[i % clients.size()];
    f.record.response_code = 200 + static_cast<uint32_t>(i % 10);
    m.record(f.record);
    ++i;
  }
}
BENCHMARK(recordManySeries)->Threads(1)->Threads(2);

void labelValues(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) {
    RequestLabelScratch scratch;
    benchmark::DoNotOptimize(requestLabelValues(f.record, scratch));
  }
}
BENCHMARK(labelValues);

void accessLogText(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) benchmark::DoNotOptimize(formatRequestLog(f.record, AccessLogFormat::kText));
}
BENCHMARK(accessLogText);

void accessLogJson(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) benchmark::DoNotOptimize(formatRequestLog(f.record, AccessLogFormat::kJson));
}
BENCHMARK(accessLogJson);

void continueTraceHop(benchmark::State& state) {
  SystemRandom random;
  InboundTrace in;
  in.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  in.tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
  for (auto _ : state) {
    HopTrace hop = continueTrace(in, random);
    benchmark::DoNotOptimize(hop.context.traceparent());
  }
}
BENCHMARK(continueTraceHop);

}  // namespace
}  // namespace nodemesh::waypoint

BENCHMARK_MAIN();
