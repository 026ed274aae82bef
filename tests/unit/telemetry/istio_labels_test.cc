#include "telemetry/istio_labels.h"

#include <gtest/gtest.h>

#include "telemetry/tcp_metrics.h"

namespace nodemesh::telemetry {
namespace {

TEST(IstioLabelsTest, WorkloadLabelsFallBackAsIstiodDoes) {
  model::Workload w;
  w.name = "cart-v1-5c2a";
  w.namespace_name = "shop";
  WorkloadLabels l = workloadLabels(&w);
  // No workload name, canonical name or revision: the pod name, then "latest".
  EXPECT_EQ(l.workload, "cart-v1-5c2a");
  EXPECT_EQ(l.canonical_service, "cart-v1-5c2a");
  EXPECT_EQ(l.app, "cart-v1-5c2a");
  EXPECT_EQ(l.canonical_revision, "latest");
  EXPECT_EQ(l.version, "latest");
  EXPECT_EQ(l.workload_namespace, "shop");
  EXPECT_EQ(l.cluster, "unknown");

  w.workload_name = "cart-v1";
  w.canonical_name = "cart";
  w.canonical_revision = "v1";
  w.cluster_id = "Kubernetes";
  l = workloadLabels(&w);
  EXPECT_EQ(l.workload, "cart-v1");
  EXPECT_EQ(l.canonical_service, "cart");
  EXPECT_EQ(l.app, "cart");
  EXPECT_EQ(l.canonical_revision, "v1");
  EXPECT_EQ(l.version, "v1");
  EXPECT_EQ(l.cluster, "Kubernetes");
}

TEST(IstioLabelsTest, NoWorkloadOrServiceIsUnknown) {
  WorkloadLabels w = workloadLabels(nullptr);
  for (std::string_view v : {w.workload, w.workload_namespace, w.canonical_service,
                             w.canonical_revision, w.app, w.version, w.cluster}) {
    EXPECT_EQ(v, "unknown");
  }
  ServiceLabels s = serviceLabels(nullptr);
  EXPECT_EQ(s.service, "unknown");
  EXPECT_EQ(s.service_name, "unknown");
  EXPECT_EQ(s.service_namespace, "unknown");
}

TEST(IstioLabelsTest, ServiceLabelsAreHostnameNameAndNamespace) {
  model::Service s;
  s.name = "cart";
  s.namespace_name = "shop";
  s.hostname = "cart.shop.svc.cluster.local";
  ServiceLabels l = serviceLabels(&s);
  EXPECT_EQ(l.service, "cart.shop.svc.cluster.local");
  EXPECT_EQ(l.service_name, "cart");
  EXPECT_EQ(l.service_namespace, "shop");
}

TEST(TcpLabelsTest, MakeTcpLabelsPlacesEveryLabelUnderItsName) {
  model::Workload src;
  src.name = "frontend-7d9f";
  src.namespace_name = "shop";
  TcpLabelInput in;
  in.reporter = "waypoint";
  in.source = workloadLabels(&src);
  in.source_principal = "spiffe://cluster.local/ns/shop/sa/frontend";
  in.destination_principal = "";  // not proven: unknown
  in.connection_security_policy = "mutual_tls";
  TcpLabels l = makeTcpLabels(in);
  auto at = [&](std::string_view name) {
    for (size_t i = 0; i < kTcpLabelNames.size(); ++i) {
      if (kTcpLabelNames[i] == name) return l[i];
    }
    return std::string("<missing>");
  };
  EXPECT_EQ(at("reporter"), "waypoint");
  EXPECT_EQ(at("source_workload"), "frontend-7d9f");
  EXPECT_EQ(at("source_principal"), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(at("destination_principal"), "unknown");
  EXPECT_EQ(at("destination_workload"), "unknown");
  EXPECT_EQ(at("request_protocol"), "tcp");
  EXPECT_EQ(at("response_flags"), "-");
  EXPECT_EQ(at("connection_security_policy"), "mutual_tls");
}

}  // namespace
}  // namespace nodemesh::telemetry
