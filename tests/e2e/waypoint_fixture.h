#pragma once

// The two-node mesh with a waypoint (tests/e2e/waypoint_test.cc, waypoint_routes_test.cc,
// waypoint_h2_test.cc): the cart service (VIP 10.96.0.20:80 -> 8080, endpoints cart-v1 on node2
// and cart-v2 on node1) names a waypoint, nodemesh-waypoint running in its own pod (waypoint-0,
// node2, 10.244.2.9; not enrolled: the agents never capture it).

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim {

inline constexpr const char* kCartVip = "10.96.0.20:80";
inline constexpr const char* kWaypointIdentity = "spiffe://cluster.local/ns/shop/sa/waypoint";
inline constexpr const char* kFrontendIdentity = "spiffe://cluster.local/ns/shop/sa/frontend";

// The test mesh with the waypoint: its workload (protocol TCP: a waypoint terminates HBONE
// itself, so no agent enrolls it), its service, and cart's `waypoint` naming that service.
inline std::string withWaypoint(std::string text) {
  const std::string workload =
      "- uid: cluster1//v1/Pod/shop/waypoint-0\n"
      "  name: waypoint-0\n"
      "  namespace: shop\n"
      "  serviceAccount: waypoint\n"
      "  workloadIps: [\"10.244.2.9\"]\n"
      "  protocol: TCP\n"
      "  node: node2\n"
      "  services: {\"shop/waypoint.shop.svc.cluster.local\": {15008: 15008}}\n";
  text.insert(text.find("workloads:\n") + std::string("workloads:\n").size(), workload);
  const std::string service =
      "- name: waypoint\n"
      "  namespace: shop\n"
      "  hostname: waypoint.shop.svc.cluster.local\n"
      "  vips: [\"/10.96.0.9\"]\n"
      "  ports: {15008: 15008}\n";
  text.insert(text.find("services:\n") + std::string("services:\n").size(), service);
  const std::string cart_ports = "  ports: {80: 8080}\n";
  text.insert(text.find(cart_ports) + cart_ports.size(),
              "  waypoint: {destination: \"shop/waypoint.shop.svc.cluster.local\", "
              "hboneMtlsPort: 15008}\n");
  return text;
}

// The complete access log lines (a line still being written, without its newline, is left out)
// that contain `needle`.
inline std::vector<std::string> accessLines(const std::string& log, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(log.substr(0, log.rfind('\n') + 1));
  for (std::string line; std::getline(in, line);) {
    if (line.find(" access ") != std::string::npos && line.find(needle) != std::string::npos) {
      out.push_back(line);
    }
  }
  return out;
}

// Services cart-v1 and cart-v2 (VIPs 10.96.0.21 and .22, port 80 -> 8080), one endpoint each
// (the pods of the same names), for routes to name as backends.
inline std::string withCartVersions(std::string text) {
  for (const char* version : {"cart-v1", "cart-v2"}) {
    const std::string uid = std::string("- uid: cluster1//v1/Pod/shop/") + version;
    const std::string line = "  services: {\"shop/cart.shop.svc.cluster.local\": {80: 8080}}\n";
    auto at = text.find(line, text.find(uid));
    text.replace(at, line.size(),
                 "  services: {\"shop/cart.shop.svc.cluster.local\": {80: 8080}, \"shop/" +
                     std::string(version) + ".shop.svc.cluster.local\": {80: 8080}}\n");
  }
  const std::string services =
      "- {name: cart-v1, namespace: shop, hostname: cart-v1.shop.svc.cluster.local,\n"
      "   vips: [\"/10.96.0.21\"], ports: {80: 8080}}\n"
      "- {name: cart-v2, namespace: shop, hostname: cart-v2.shop.svc.cluster.local,\n"
      "   vips: [\"/10.96.0.22\"], ports: {80: 8080}}\n";
  text.insert(text.find("services:\n") + std::string("services:\n").size(), services);
  return text;
}

class WaypointTest : public MeshTest {
 protected:
  void SetUp() override {
    MeshTest::SetUp();
    if (IsSkipped()) return;
    cluster_->addPod("node2", "waypoint", "10.244.2.9");
    config_path_ = cluster_->writeFile("mesh.yaml", meshConfig());
    startAgents();
    startWaypoint();
  }

  // The config the agents and the waypoint start with.
  virtual std::string meshConfig() { return withWaypoint(testConfig()); }

  // (Re)starts the waypoint in its pod with `extra` flags.
  void startWaypoint(const std::vector<std::string>& extra = {}) {
    if (waypoint_) waypoint_->kill();
    std::vector<std::string> argv = {waypointPath(),
                                     "--config",
                                     config_path_,
                                     "--workload",
                                     "cluster1//v1/Pod/shop/waypoint-0",
                                     "--state-dir",
                                     cluster_->workDir() + "/ca"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    waypoint_ = &cluster_->startInPod("waypoint", argv);
    ASSERT_TRUE(waypoint_->waitForOutput("serving HBONE on", seconds(10))) << waypoint_->output();
  }

  // Waits until each of `pods` answers GET /who on 127.0.0.1:8080 with its name, the waypoint
  // has its config, and the pods' agents accept HBONE (enrollment may lag the servers).
  void waitPodsServing(const std::vector<std::string>& pods) {
    for (const std::string& pod : pods) {
      ASSERT_TRUE(waitFor(
          [&] {
            auto r = cluster_->runInPod(pod, {"curl", "-s", "http://127.0.0.1:8080/who"});
            return r.out == pod + "\n";
          },
          seconds(10)))
          << pod;
    }
    ASSERT_TRUE(waypoint_->waitForOutput("waypoint: config in force", seconds(10)));
    ASSERT_TRUE(waitFor(
        [&] {
          for (const std::string& pod : pods) {
            auto r = cluster_->runInPod(pod, {"ss", "-Hltn", "sport = :15008"});
            if (r.out.find("15008") == std::string::npos) return false;
          }
          return true;
        },
        seconds(15)));
  }

  Process* waypoint_ = nullptr;
};

// A helper script of tests/e2e/scripts (run with /usr/bin/python3).
inline std::string e2eScript(const std::string& name) {
  return (std::filesystem::path(NODEMESH_EXAMPLES_DIR).parent_path() / "tests/e2e/scripts" / name)
      .string();
}

}  // namespace nodemesh::sim
