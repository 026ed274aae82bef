#include "k8s/membership.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

namespace nodemesh::k8s {
namespace {

struct Row {
  const char* name;
  const char* pod_namespace;
  std::map<std::string, std::string> pod_labels;
  std::optional<std::map<std::string, std::string>> namespace_labels;  // nullopt: unknown ns
  bool host_network;
  bool sidecar;
  bool enrolled;
  MembershipReason reason;
};

const std::map<std::string, std::string> kAmbient = {{"istio.io/dataplane-mode", "ambient"}};
const std::map<std::string, std::string> kNone = {{"istio.io/dataplane-mode", "none"}};
const std::map<std::string, std::string> kOther = {{"app", "web"}};

class K8sMembershipTest : public ::testing::TestWithParam<Row> {};

TEST_P(K8sMembershipTest, FollowsIstioAmbientRules) {
  const Row& row = GetParam();
  Pod pod;
  pod.metadata.name = "p";
  pod.metadata.namespace_name = row.pod_namespace;
  pod.metadata.labels = row.pod_labels;
  pod.host_network = row.host_network;
  if (row.sidecar) pod.metadata.annotations["sidecar.istio.io/status"] = "{}";
  Namespace ns;
  ns.metadata.name = row.pod_namespace;
  if (row.namespace_labels) ns.metadata.labels = *row.namespace_labels;

  Membership m = podMembership(pod, row.namespace_labels ? &ns : nullptr);
  EXPECT_EQ(m.enrolled, row.enrolled) << row.name;
  EXPECT_EQ(m.reason, row.reason) << row.name << ": " << describe(m.reason);
}

INSTANTIATE_TEST_SUITE_P(
    Table, K8sMembershipTest,
    ::testing::Values(Row{"NothingLabelled", "shop", kOther, kOther, false, false, false,
                          MembershipReason::kNotOptedIn},
                      Row{"NamespaceAmbient",
                          "shop",
                          {},
                          kAmbient,
                          false,
                          false,
                          true,
                          MembershipReason::kNamespaceOptedIn},
                      Row{"PodAmbient", "shop", kAmbient, std::map<std::string, std::string>{},
                          false, false, true, MembershipReason::kPodOptedIn},
                      Row{"PodAmbientNamespaceUnknown", "shop", kAmbient, std::nullopt, false,
                          false, true, MembershipReason::kPodOptedIn},
                      Row{"NamespaceAmbientButUnknown",
                          "shop",
                          {},
                          std::nullopt,
                          false,
                          false,
                          false,
                          MembershipReason::kNotOptedIn},
                      Row{"PodNoneInAmbientNamespace", "shop", kNone, kAmbient, false, false, false,
                          MembershipReason::kPodOptedOut},
                      Row{"PodAmbientInNoneNamespace", "shop", kAmbient, kNone, false, false, true,
                          MembershipReason::kPodOptedIn},
                      Row{"NamespaceNoneAlone",
                          "shop",
                          {},
                          kNone,
                          false,
                          false,
                          false,
                          MembershipReason::kNotOptedIn},
                      Row{"HostNetworkInAmbientNamespace",
                          "shop",
                          {},
                          kAmbient,
                          true,
                          false,
                          false,
                          MembershipReason::kHostNetwork},
                      Row{"HostNetworkWithPodLabel", "shop", kAmbient, kAmbient, true, false, false,
                          MembershipReason::kHostNetwork},
                      Row{"KubeSystemAmbientNamespace",
                          "kube-system",
                          {},
                          kAmbient,
                          false,
                          false,
                          false,
                          MembershipReason::kExcludedNamespace},
                      Row{"KubeSystemPodLabel", "kube-system", kAmbient, kAmbient, false, false,
                          false, MembershipReason::kExcludedNamespace},
                      Row{"SidecarInAmbientNamespace",
                          "shop",
                          {},
                          kAmbient,
                          false,
                          true,
                          false,
                          MembershipReason::kSidecar},
                      Row{"ValueIsCaseSensitive",
                          "shop",
                          {{"istio.io/dataplane-mode", "Ambient"}},
                          {},
                          false,
                          false,
                          false,
                          MembershipReason::kNotOptedIn},
                      Row{"OtherValueOnPodFallsBackToNamespace",
                          "shop",
                          {{"istio.io/dataplane-mode", "sidecar"}},
                          kAmbient,
                          false,
                          false,
                          true,
                          MembershipReason::kNamespaceOptedIn}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(K8sMembershipOptionsTest, ExcludedNamespacesAreConfigurable) {
  Pod pod;
  pod.metadata.namespace_name = "kube-system";
  pod.metadata.labels = kAmbient;
  MembershipOptions none;
  none.excluded_namespaces.clear();
  EXPECT_TRUE(podMembership(pod, nullptr, none).enrolled);
  MembershipOptions mine;
  mine.excluded_namespaces = {"istio-system"};
  pod.metadata.namespace_name = "istio-system";
  EXPECT_EQ(podMembership(pod, nullptr, mine).reason, MembershipReason::kExcludedNamespace);
}

}  // namespace
}  // namespace nodemesh::k8s
