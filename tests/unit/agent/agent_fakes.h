#pragma once

// Test doubles for what Agent drives: the pod source, the capture control, the tunnel and the
// clock. They record what the agent asked for; none needs privileges.

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/capture_control.h"
#include "agent/pod_source.h"
#include "agent/steady_clock.h"
#include "tunnel/tunnel.h"

namespace nodemesh::agent::testing {

class FakeClock final : public SteadyClock {
 public:
  TimePoint now() const override { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }

 private:
  TimePoint now_{std::chrono::hours(1)};
};

// Pods by id; a pod's netns cookie is its id + 1000.
class FakePodSource final : public PodSource {
 public:
  struct Pod {
    std::string path;
    std::vector<IpAddress> ips;
  };

  void add(uint64_t id, std::vector<IpAddress> ips) {
    pods[id] = {"/var/run/netns/pod" + std::to_string(id), std::move(ips)};
    changed_ = true;
  }
  void remove(uint64_t id) {
    pods.erase(id);
    changed_ = true;
  }
  static uint64_t cookieOf(uint64_t id) { return id + 1000; }

  bool changed() override { return std::exchange(changed_, false); }
  std::vector<PodNetns> list(bool searching) override {
    searches.push_back(searching);
    std::vector<PodNetns> out;
    for (const auto& [id, pod] : pods) out.push_back({id, pod.path});
    return out;
  }
  Result<OpenedNetns> open(const PodNetns& netns) override {
    if (!pods.count(netns.id)) return Error{ENOENT, "gone"};
    return OpenedNetns{UniqueFd(), cookieOf(netns.id)};
  }
  Result<std::vector<IpAddress>> addresses(const PodNetns& netns, int /*netns_fd*/) override {
    ++address_lookups;
    auto it = pods.find(netns.id);
    if (it == pods.end()) return Error{ENOENT, "gone"};
    return it->second.ips;
  }

  std::map<uint64_t, Pod> pods;
  std::vector<bool> searches;  // the `searching` argument of each list()
  int address_lookups = 0;

 private:
  bool changed_ = false;
};

class FakeTunnel final : public tunnel::Tunnel {
 public:
  Result<tunnel::PodListenerFds> addPod(const tunnel::PodSpec& pod) override {
    pods[pod.netns_cookie] = pod;
    tunnel::PodListenerFds fds;
    fds.outbound_v4 = 100;
    fds.inbound_v4 = 101;
    fds.hbone_v4 = 102;
    return fds;
  }
  void removePod(uint64_t netns_cookie) override { pods.erase(netns_cookie); }
  void setSnapshot(model::SnapshotPtr /*snapshot*/) override {}
  tunnel::TunnelStats stats() const override { return {}; }
  void stop() override {}

  std::map<uint64_t, tunnel::PodSpec> pods;  // by netns cookie
};

class FakeCapture final : public CaptureControl {
 public:
  explicit FakeCapture(const FakeTunnel& tunnel) : tunnel_(tunnel) {}

  Status enrollPod(uint64_t netns_cookie, int /*netns_fd*/, const std::vector<IpAddress>& ips,
                   const CaptureListenerFds& listeners) override {
    ++enroll_calls;
    // Capture only ever steers to listeners that exist.
    listeners_ready = listeners_ready && tunnel_.pods.count(netns_cookie) > 0;
    if (failures_left > 0) {
      --failures_left;
      return Error{ENOSPC, "pod map full"};
    }
    enrolled[netns_cookie] = ips;
    fds[netns_cookie] = listeners;
    return okStatus();
  }
  Status unenrollPod(uint64_t netns_cookie, const std::vector<IpAddress>& /*ips*/) override {
    enrolled.erase(netns_cookie);
    fds.erase(netns_cookie);
    return okStatus();
  }
  Status forgetPodsExcept(const std::set<uint64_t>& keep) override {
    forgets.push_back(keep);
    return okStatus();
  }

  std::map<uint64_t, std::vector<IpAddress>> enrolled;  // by netns cookie
  std::map<uint64_t, CaptureListenerFds> fds;
  std::vector<std::set<uint64_t>> forgets;
  int enroll_calls = 0;
  int failures_left = 0;
  bool listeners_ready = true;  // every enrollPod found the tunnel's listeners in place

 private:
  const FakeTunnel& tunnel_;
};

}  // namespace nodemesh::agent::testing
