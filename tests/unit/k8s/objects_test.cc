#include "k8s/objects.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nodemesh::k8s {
namespace {

using nlohmann::json;

// A Pod as the API server returns it (trimmed), with fields nodemesh ignores.
constexpr const char* kPod = R"({
  "kind": "Pod", "apiVersion": "v1",
  "metadata": {
    "name": "web-1", "namespace": "shop", "uid": "5f1c-uid", "resourceVersion": "4711",
    "labels": {"app": "web", "istio.io/dataplane-mode": "ambient"},
    "annotations": {"ambient.istio.io/redirection": "enabled"},
    "ownerReferences": [{"kind": "ReplicaSet", "name": "web"}]
  },
  "spec": {
    "nodeName": "node-a", "serviceAccountName": "web-sa",
    "containers": [{"name": "web", "image": "nginx"}]
  },
  "status": {
    "phase": "Running", "podIP": "10.199.1.5",
    "podIPs": [{"ip": "10.199.1.5"}, {"ip": "fd00::5"}],
    "conditions": [{"type": "Ready", "status": "True"}]
  }
})";

TEST(K8sObjectsTest, ParsesThePodFieldsNodemeshUses) {
  auto pod = parsePod(json::parse(kPod));
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->metadata.name, "web-1");
  EXPECT_EQ(pod->metadata.namespace_name, "shop");
  EXPECT_EQ(pod->metadata.uid, "5f1c-uid");
  EXPECT_EQ(pod->metadata.resource_version, "4711");
  EXPECT_EQ(pod->metadata.labels.at("istio.io/dataplane-mode"), "ambient");
  EXPECT_EQ(pod->metadata.annotations.at("ambient.istio.io/redirection"), "enabled");
  EXPECT_EQ(pod->node_name, "node-a");
  EXPECT_EQ(pod->service_account_name, "web-sa");
  EXPECT_FALSE(pod->host_network);
  EXPECT_EQ(pod->phase, "Running");
  ASSERT_EQ(pod->pod_ips.size(), 2U);
  EXPECT_EQ(pod->pod_ips[0].toString(), "10.199.1.5");
  EXPECT_EQ(pod->pod_ips[1].toString(), "fd00::5");
  EXPECT_EQ(objectKey(pod->metadata), "shop/web-1");
}

TEST(K8sObjectsTest, PodIpIsTheFallbackWithoutPodIps) {
  json j = json::parse(kPod);
  j["status"].erase("podIPs");
  auto pod = parsePod(j);
  ASSERT_TRUE(pod) << pod.error().message;
  ASSERT_EQ(pod->pod_ips.size(), 1U);
  EXPECT_EQ(pod->pod_ips[0].toString(), "10.199.1.5");
}

TEST(K8sObjectsTest, APendingPodHasNoAddressesAndDefaults) {
  json j = {{"metadata", {{"name", "p"}, {"namespace", "ns"}, {"resourceVersion", "1"}}},
            {"spec", {{"hostNetwork", true}}},
            {"status", {{"phase", "Pending"}}}};
  auto pod = parsePod(j);
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_TRUE(pod->pod_ips.empty());
  EXPECT_TRUE(pod->host_network);
  EXPECT_EQ(pod->node_name, "");
  EXPECT_TRUE(pod->metadata.labels.empty());
}

TEST(K8sObjectsTest, ParsesANamespace) {
  json j = {{"metadata",
             {{"name", "shop"},
              {"resourceVersion", "7"},
              {"labels", {{"istio.io/dataplane-mode", "ambient"}}}}}};
  auto ns = parseNamespace(j);
  ASSERT_TRUE(ns) << ns.error().message;
  EXPECT_EQ(ns->metadata.name, "shop");
  EXPECT_EQ(objectKey(ns->metadata), "shop");
  EXPECT_EQ(ns->metadata.labels.at("istio.io/dataplane-mode"), "ambient");
}

struct MalformedCase {
  const char* name;
  const char* patch;     // JSON merge patch applied to kPod (RFC 7386), or a whole document
  const char* expected;  // part of the error message
  bool whole = false;
};

class K8sMalformedPodTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(K8sMalformedPodTest, IsRefusedWithAClearError) {
  const MalformedCase& c = GetParam();
  json j = json::parse(c.patch);
  if (!c.whole) {
    json pod = json::parse(kPod);
    pod.merge_patch(j);
    j = pod;
  }
  auto pod = parsePod(j);
  ASSERT_FALSE(pod) << c.name;
  EXPECT_NE(pod.error().message.find(c.expected), std::string::npos) << pod.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, K8sMalformedPodTest,
    ::testing::Values(
        MalformedCase{"NotAnObject", "[1,2]", "expected a JSON object", true},
        MalformedCase{"NoMetadata", R"({"spec": {}})", "no metadata", true},
        MalformedCase{"MetadataNotObject", R"({"metadata": "x"})", "expected an object", true},
        MalformedCase{"NoName", R"({"metadata": {"name": null}})", "metadata.name: missing"},
        MalformedCase{"NameNotString", R"({"metadata": {"name": 5}})",
                      "metadata.name: expected a string"},
        MalformedCase{"NoResourceVersion", R"({"metadata": {"resourceVersion": null}})",
                      "resourceVersion missing"},
        MalformedCase{"LabelNotString", R"({"metadata": {"labels": {"a": 1}}})",
                      "metadata.labels[a]: expected a string"},
        MalformedCase{"AnnotationsArray", R"({"metadata": {"annotations": []}})",
                      "metadata.annotations: expected an object"},
        MalformedCase{"SpecNotObject", R"({"spec": "x"})", "pod.spec: expected an object"},
        MalformedCase{"HostNetworkString", R"({"spec": {"hostNetwork": "yes"}})",
                      "spec.hostNetwork: expected a boolean"},
        MalformedCase{"NodeNameNumber", R"({"spec": {"nodeName": 3}})",
                      "spec.nodeName: expected a string"},
        MalformedCase{"PodIpsNotArray", R"({"status": {"podIPs": {"ip": "10.0.0.1"}}})",
                      "status.podIPs: expected an array"},
        MalformedCase{"PodIpsEntryWithoutIp", R"({"status": {"podIPs": [{"address": "x"}]}})",
                      "status.podIPs[0].ip: missing"},
        MalformedCase{"PodIpNotAnAddress", R"({"status": {"podIPs": [{"ip": "10.0.0.300"}]}})",
                      "is not an IP address"},
        MalformedCase{"PodIpFallbackNotAnAddress",
                      R"({"status": {"podIPs": null, "podIP": "pod-1"}})",
                      "status.podIP: \"pod-1\" is not an IP address"},
        MalformedCase{"PhaseNumber", R"({"status": {"phase": 1}})",
                      "status.phase: expected a string"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(K8sObjectsTest, TheErrorNamesThePod) {
  json pod = json::parse(kPod);
  pod["spec"]["hostNetwork"] = "yes";
  auto parsed = parsePod(pod);
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().message.rfind("pod shop/web-1: ", 0), 0U) << parsed.error().message;
}

TEST(K8sObjectsTest, ANamespacedObjectIsNotANamespace) {
  auto ns = parseNamespace(json::parse(kPod));
  ASSERT_FALSE(ns);
  EXPECT_NE(ns.error().message.find("not a Namespace"), std::string::npos);
}

}  // namespace
}  // namespace nodemesh::k8s
