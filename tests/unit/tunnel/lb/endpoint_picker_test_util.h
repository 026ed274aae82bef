#pragma once

// Shared by the EndpointPicker tests: workloads, services and localities to pick from, and a
// harness that drives a picker the way the tunnel does, with a clock the test moves.

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <random>
#include <string>
#include <vector>
#include "tunnel/lb/endpoint_picker.h"

namespace nodemesh::tunnel::lb::endpoint_picker_test {

using std::chrono::milliseconds;
using std::chrono::seconds;

inline constexpr std::string_view kServiceKey = "shop/cart.shop.svc.cluster.local";

inline model::Workload workload(std::string name, std::string node = "node1",
                                std::string zone = "z1", std::string region = "r1") {
  static int next_ip = 1;
  model::Workload w;
  w.uid = "cluster1//v1/Pod/shop/" + name;
  w.name = std::move(name);
  w.namespace_name = "shop";
  w.workload_ips.push_back(IpAddress::parse("10.0.0." + std::to_string(next_ip++)).value());
  w.node = std::move(node);
  w.network = "net1";
  w.cluster_id = "cluster1";
  w.locality = model::Locality{std::move(region), std::move(zone), ""};
  w.protocol = model::Protocol::Hbone;
  w.services[std::string(kServiceKey)] = {};  // the service's target port applies
  return w;
}

inline model::Service service(std::optional<model::LoadBalancing> lb = std::nullopt) {
  model::Service s;
  s.name = "cart";
  s.namespace_name = "shop";
  s.hostname = "cart.shop.svc.cluster.local";
  s.vips.push_back(model::NetworkAddress{"", IpAddress::parse("10.96.0.10").value()});
  s.ports = {{80, 8080}};
  s.load_balancing = std::move(lb);
  return s;
}

inline model::LoadBalancing routing(model::LoadBalancingMode mode,
                                    std::vector<model::LoadBalancingScope> preferences) {
  model::LoadBalancing lb;
  lb.mode = mode;
  lb.routing_preference = std::move(preferences);
  return lb;
}

inline ClientLocality client(std::string node = "node1", std::string zone = "z1",
                             std::string region = "r1") {
  ClientLocality c;
  c.network = "net1";
  c.cluster = "cluster1";
  c.region = std::move(region);
  c.zone = std::move(zone);
  c.node = std::move(node);
  return c;
}

inline LbOptions options(uint64_t seed = 42) {
  LbOptions o;
  o.seed = seed;
  return o;
}

// Drives a picker the way the tunnel does, with a clock the test moves.
class Harness {
 public:
  Harness(std::vector<model::Workload> workloads, model::Service svc, LbOptions opts = options())
      : picker_(opts), service_(std::move(svc)) {
    setWorkloads(std::move(workloads));
  }

  void setWorkloads(std::vector<model::Workload> workloads) {
    snapshot_ = model::Snapshot::create(std::move(workloads), {service_}, {});
  }

  Result<Pick> pick(const std::vector<std::string>& exclude = {},
                    const ClientLocality& from = client()) {
    return picker_.pick(*snapshot_, *snapshot_->serviceByKey(kServiceKey), 80, from, exclude, now_);
  }
  // The workload name of a pick that must succeed.
  std::string pickName(const std::vector<std::string>& exclude = {},
                       const ClientLocality& from = client()) {
    auto p = pick(exclude, from);
    EXPECT_TRUE(p.ok()) << p.error().message;
    return p.ok() ? p->workload->name : "";
  }

  // One connection: picked, connected with `latency` (a failure when 0), and, unless `keep_open`,
  // closed again. Returns the workload name.
  std::string connect(const std::map<std::string, milliseconds>& latency_by_name = {},
                      bool keep_open = false) {
    auto p = pick();
    EXPECT_TRUE(p.ok()) << p.error().message;
    if (!p.ok()) return "";
    std::string name = p->workload->name;
    auto it = latency_by_name.find(name);
    const std::chrono::nanoseconds latency = it != latency_by_name.end()
                                                 ? std::chrono::nanoseconds(it->second)
                                                 : std::chrono::microseconds(200 + jitter_++ % 100);
    picker_.connectStarted(p->endpoint, now_);
    picker_.connectSucceeded(p->endpoint, latency, now_);
    if (!keep_open) picker_.connectionClosed(p->endpoint);
    return name;
  }

  void fail(const std::string& name, uint16_t port = 8080) {
    EndpointId id{uidOf(name), port};
    picker_.connectStarted(id, now_);
    picker_.connectFailed(id, now_);
  }

  const EndpointStats* stats(const std::string& name, uint16_t port = 8080) {
    stats_ = picker_.stats(now_);
    for (const EndpointStats& s : stats_) {
      if (s.endpoint == EndpointId{uidOf(name), port}) return &s;
    }
    return nullptr;
  }

  static std::string uidOf(const std::string& name) { return "cluster1//v1/Pod/shop/" + name; }

  void advance(Clock::duration d) { now_ += d; }
  TimePoint now() const { return now_; }
  EndpointPicker& picker() { return picker_; }
  const model::SnapshotPtr& snapshot() const { return snapshot_; }

 private:
  EndpointPicker picker_;
  model::Service service_;
  model::SnapshotPtr snapshot_;
  TimePoint now_{seconds(1000)};
  unsigned jitter_ = 0;
  std::vector<EndpointStats> stats_;
};

inline std::map<std::string, int> spread(Harness& h, int n,
                                         const std::map<std::string, milliseconds>& latency = {},
                                         bool keep_open = false,
                                         Clock::duration every = milliseconds(1)) {
  std::map<std::string, int> count;
  for (int i = 0; i < n; ++i) {
    ++count[h.connect(latency, keep_open)];
    h.advance(every);
  }
  return count;
}

inline void expectEven(const std::map<std::string, int>& count, int total, double tolerance) {
  ASSERT_FALSE(count.empty());
  const double even = static_cast<double>(total) / static_cast<double>(count.size());
  for (const auto& [name, n] : count) {
    EXPECT_GE(n, even * (1 - tolerance)) << name;
    EXPECT_LE(n, even * (1 + tolerance)) << name;
  }
}

}  // namespace nodemesh::tunnel::lb::endpoint_picker_test
