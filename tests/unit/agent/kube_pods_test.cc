#include "agent/kube_pods.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace nodemesh::agent {
namespace {

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

k8s::Namespace ns(const std::string& name, const std::string& mode = "") {
  k8s::Namespace n;
  n.metadata.name = name;
  n.metadata.resource_version = std::string("1");
  if (!mode.empty()) n.metadata.labels["istio.io/dataplane-mode"] = mode;
  return n;
}

k8s::Pod pod(const std::string& namespace_name, const std::string& name,
             std::vector<IpAddress> ips = {}, const std::string& mode = "") {
  k8s::Pod p;
  p.metadata.name = name;
  p.metadata.namespace_name = namespace_name;
  p.metadata.uid = fmt::format("uid-{}", name);
  p.metadata.resource_version = std::string("1");
  p.metadata.labels["app"] = name;
  if (!mode.empty()) p.metadata.labels["istio.io/dataplane-mode"] = mode;
  p.node_name = std::string("node-1");
  p.service_account_name = fmt::format("{}-sa", name);
  p.phase = std::string("Running");
  p.pod_ips = std::move(ips);
  return p;
}

cni::CniRequest add(const std::string& namespace_name, const std::string& name,
                    std::vector<std::string> ips) {
  cni::CniRequest r;
  r.command = cni::CniCommand::kAdd;
  r.container_id = fmt::format("ctr-{}", name);
  r.netns = fmt::format("/var/run/netns/cni-{}", name);
  r.pod_namespace = namespace_name;
  r.pod_name = name;
  r.pod_uid = fmt::format("uid-{}", name);
  r.ips = std::move(ips);
  return r;
}

KubePods makePods() {
  KubePodsOptions options;
  options.node = std::string("node-1");
  options.trust_domain = std::string("example.org");
  options.cluster_id = std::string("cluster1");
  return KubePods(options);
}

std::vector<std::string> uids(const std::vector<model::Workload>& workloads) {
  std::vector<std::string> out;
  out.reserve(workloads.size());
  for (const auto& w : workloads) out.push_back(w.uid);
  return out;
}

TEST(KubePodsTest, AnAmbientNamespacesPodBecomesAnHboneWorkloadAsIstiodDescribesIt) {
  KubePods pods = makePods();
  EXPECT_TRUE(pods.upsertNamespace(ns("shop", "ambient")));
  auto cart = pod("shop", "cart", {ip("10.244.1.5")});
  cart.metadata.labels["version"] = "v2";
  EXPECT_TRUE(pods.upsertPod(cart));
  auto workloads = pods.workloads();
  ASSERT_EQ(workloads.size(), 1u);
  const model::Workload& w = workloads[0];
  EXPECT_EQ(w.uid, "cluster1//Pod/shop/cart");
  EXPECT_EQ(w.name, "cart");
  EXPECT_EQ(w.namespace_name, "shop");
  EXPECT_EQ(w.service_account, "cart-sa");
  EXPECT_EQ(w.trust_domain, "example.org");
  EXPECT_EQ(w.identity(), "spiffe://example.org/ns/shop/sa/cart-sa");
  EXPECT_EQ(w.node, "node-1");
  EXPECT_EQ(w.protocol, model::Protocol::Hbone);
  EXPECT_EQ(w.workload_ips, std::vector<IpAddress>{ip("10.244.1.5")});
  EXPECT_EQ(w.canonical_name, "cart");
  EXPECT_EQ(w.canonical_revision, "v2");
}

TEST(KubePodsTest, LabelsDecideAndChangesAreReported) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("plain"));
  pods.upsertPod(pod("plain", "web", {ip("10.244.1.6")}));
  EXPECT_TRUE(pods.workloads().empty());
  // The namespace opts in.
  EXPECT_TRUE(pods.upsertNamespace(ns("plain", "ambient")));
  EXPECT_EQ(uids(pods.workloads()), std::vector<std::string>{"cluster1//Pod/plain/web"});
  // The same labels again (a new resourceVersion only): no change.
  auto again = ns("plain", "ambient");
  again.metadata.resource_version = std::string("2");
  EXPECT_FALSE(pods.upsertNamespace(again));
  // The pod opts out.
  EXPECT_TRUE(pods.upsertPod(pod("plain", "web", {ip("10.244.1.6")}, "none")));
  EXPECT_TRUE(pods.workloads().empty());
  // A pod's own label opts it in, whatever the namespace says.
  EXPECT_TRUE(pods.upsertNamespace(ns("plain")));
  EXPECT_TRUE(pods.upsertPod(pod("plain", "web", {ip("10.244.1.6")}, "ambient")));
  EXPECT_EQ(pods.workloads().size(), 1u);
  // Deleted: gone.
  EXPECT_TRUE(pods.removePod("plain", "web"));
  EXPECT_TRUE(pods.workloads().empty());
  EXPECT_FALSE(pods.removePod("plain", "web"));
}

TEST(KubePodsTest, ExcludedNamespacesHostNetworkAndFinishedPodsAreNeverWorkloads) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("kube-system", "ambient"));
  pods.upsertNamespace(ns("shop", "ambient"));
  pods.upsertPod(pod("kube-system", "dns", {ip("10.244.1.2")}));
  auto host = pod("shop", "host", {ip("192.168.1.1")});
  host.host_network = true;
  pods.upsertPod(host);
  auto job = pod("shop", "job", {ip("10.244.1.3")});
  job.phase = std::string("Succeeded");
  pods.upsertPod(job);
  pods.upsertPod(pod("shop", "cart", {ip("10.244.1.4")}));
  EXPECT_EQ(uids(pods.workloads()), std::vector<std::string>{"cluster1//Pod/shop/cart"});
}

TEST(KubePodsTest, PodsOfOtherNodesAreIgnored) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("shop", "ambient"));
  auto elsewhere = pod("shop", "cart", {ip("10.244.2.4")});
  elsewhere.node_name = std::string("node-2");
  EXPECT_FALSE(pods.upsertPod(elsewhere));
  EXPECT_TRUE(pods.workloads().empty());
  EXPECT_FALSE(pods.knowsPod("shop", "cart"));
}

TEST(KubePodsTest, CniAddGivesTheAddressesBeforeTheKubeletWritesThem) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("shop", "ambient"));
  pods.upsertPod(pod("shop", "cart"));    // no status.podIPs yet
  EXPECT_TRUE(pods.workloads().empty());  // nothing to find its netns by
  CniDecision d = pods.cniAdd(add("shop", "cart", {"10.244.1.5/24", "fd00::5/64"}), nullptr);
  ASSERT_TRUE(d.enroll) << d.reason;
  ASSERT_TRUE(d.workload);
  EXPECT_EQ(d.workload->workload_ips, (std::vector<IpAddress>{ip("10.244.1.5"), ip("fd00::5")}));
  EXPECT_EQ(pods.workloads().size(), 1u);
  // The status then wins; DEL forgets the chain's addresses, twice is fine.
  pods.upsertPod(pod("shop", "cart", {ip("10.244.1.5")}));
  EXPECT_EQ(pods.workloads()[0].workload_ips, std::vector<IpAddress>{ip("10.244.1.5")});
  cni::CniRequest del = add("shop", "cart", {});
  del.command = cni::CniCommand::kDel;
  EXPECT_TRUE(pods.cniDel(del));
  EXPECT_FALSE(pods.cniDel(del));
  EXPECT_EQ(pods.workloads().size(), 1u);  // the status still has the address
}

TEST(KubePodsTest, CniAddOfAnUnknownOrMismatchedPodEnrollsNothing) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("shop", "ambient"));
  CniDecision unknown = pods.cniAdd(add("shop", "cart", {"10.244.1.5/24"}), nullptr);
  EXPECT_FALSE(unknown.enroll);
  EXPECT_EQ(unknown.reason, "the pod is not known to the API server");
  // The runtime did not name the pod.
  cni::CniRequest anonymous = add("", "", {"10.244.1.5/24"});
  EXPECT_FALSE(pods.cniAdd(anonymous, nullptr).enroll);
  // A pod fetched from the API for the ADD joins the copy.
  k8s::Pod fetched = pod("shop", "cart");
  CniDecision d = pods.cniAdd(add("shop", "cart", {"10.244.1.5/24"}), &fetched);
  EXPECT_TRUE(d.enroll);
  EXPECT_TRUE(pods.knowsPod("shop", "cart"));
  // The runtime set up another pod of that name (recreated): not this one.
  cni::CniRequest stale = add("shop", "cart", {"10.244.1.9/24"});
  stale.pod_uid = std::string("uid-other");
  CniDecision mismatch = pods.cniAdd(stale, nullptr);
  EXPECT_FALSE(mismatch.enroll);
  EXPECT_NE(mismatch.reason.find("uid-other"), std::string::npos);
}

TEST(KubePodsTest, ARecreatedPodForgetsTheOldPodsChainAddresses) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("shop", "ambient"));
  pods.upsertPod(pod("shop", "db-0"));
  ASSERT_TRUE(pods.cniAdd(add("shop", "db-0", {"10.244.1.7/24"}), nullptr).enroll);
  auto recreated = pod("shop", "db-0");
  recreated.metadata.uid = std::string("uid-db-0-new");
  EXPECT_TRUE(pods.upsertPod(recreated));
  EXPECT_TRUE(pods.workloads().empty());
}

TEST(KubePodsTest, CniStateListsWhatThePluginNeedsWhenTheAgentIsDown) {
  KubePods pods = makePods();
  pods.upsertNamespace(ns("shop", "ambient"));
  pods.upsertNamespace(ns("kube-system", "ambient"));  // excluded: never required
  pods.upsertNamespace(ns("plain"));
  pods.upsertPod(pod("plain", "legacy", {}, "ambient"));
  pods.upsertPod(pod("shop", "debug", {}, "none"));
  cni::CniState state = pods.cniState();
  EXPECT_EQ(state.ambient_namespaces, std::vector<std::string>{"shop"});
  EXPECT_EQ(state.ambient_pods, std::vector<std::string>{"plain/legacy"});
  EXPECT_EQ(state.opt_out_pods, std::vector<std::string>{"shop/debug"});
  EXPECT_TRUE(state.requiresMesh("shop", "cart"));
  EXPECT_FALSE(state.requiresMesh("shop", "debug"));
  EXPECT_FALSE(state.requiresMesh("kube-system", "coredns"));
}

TEST(KubePodsTest, PodsReportTheirAnnotation) {
  KubePods pods = makePods();
  auto a = pod("shop", "a");
  a.metadata.annotations["ambient.istio.io/redirection"] = "enabled";
  pods.upsertPod(a);
  pods.upsertPod(pod("shop", "b"));
  auto refs = pods.pods();
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_TRUE(refs[0].annotated);
  EXPECT_EQ(refs[0].workload_uid, "cluster1//Pod/shop/a");
  EXPECT_FALSE(refs[1].annotated);
  // An annotation change alone is a change (the annotator needs to see it).
  a.metadata.annotations.clear();
  EXPECT_TRUE(pods.upsertPod(a));
}

TEST(KubePodsTest, SyncedOnlyWhenBothListsAreComplete) {
  KubePods pods = makePods();
  EXPECT_FALSE(pods.synced());
  pods.setPodsSynced();
  EXPECT_FALSE(pods.synced());
  pods.setNamespacesSynced();
  EXPECT_TRUE(pods.synced());
}

TEST(KubePodsTest, CniAddressesSkipsWhatIsNotAnAddress) {
  EXPECT_EQ(cniAddresses({"10.0.0.1/24", "garbage", "10.0.0.1/24", "fd00::1/64", "10.0.0.2"}),
            (std::vector<IpAddress>{ip("10.0.0.1"), ip("fd00::1"), ip("10.0.0.2")}));
}

}  // namespace
}  // namespace nodemesh::agent
