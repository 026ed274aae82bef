#include "cni/plugin.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/state_file.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::cni {
namespace {

using nlohmann::json;

// What the bridge plugin (with host-local) prints for a pod, in the shape of CNI 1.0.0.
constexpr const char* kPrevResult = R"({
  "cniVersion": "1.0.0",
  "interfaces": [
    {"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
    {"name": "veth1234", "mac": "aa:bb:cc:00:00:02"},
    {"name": "eth0", "mac": "aa:bb:cc:00:00:03", "sandbox": "/var/run/netns/pod1"}
  ],
  "ips": [{"interface": 2, "address": "10.199.1.5/24", "gateway": "10.199.1.1"},
          {"interface": 2, "address": "fd00:199::5/64"}],
  "routes": [{"dst": "0.0.0.0/0", "gw": "10.199.1.1"}],
  "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
  "zeta": {"b": 1, "a": [1.5, true, null]}
})";

// A fake agent: records what it was asked and answers as told.
struct FakeAgent {
  std::optional<CniReply> reply = CniReply::success(true, "enrolled");  // nullopt: unreachable
  std::vector<CniRequest> requests;
  std::vector<PluginConfig> configs;

  AgentCall call() {
    return [this](const PluginConfig& config, const CniRequest& request) -> Result<CniReply> {
      requests.push_back(request);
      configs.push_back(config);
      if (!reply) return Error{ECONNREFUSED, "connect: Connection refused"};
      return *reply;
    };
  }
};

class CniPluginTest : public ::testing::Test {
 protected:
  PluginEnv env(const std::string& command) const {
    PluginEnv e;
    e.command = command;
    e.container_id = "ctr-1";
    e.netns = "/var/run/netns/pod1";
    e.if_name = "eth0";
    e.args =
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1;"
        "K8S_POD_INFRA_CONTAINER_ID=ctr-1;K8S_POD_UID=uid-42";
    e.path = "/opt/cni/bin";
    return e;
  }

  json config(const std::string& version = "1.0.0", bool prev = true) const {
    json c = {{"cniVersion", version},
              {"name", "k8s-pod-network"},
              {"type", "nodemesh-cni"},
              {"agentSocket", dir_.path() + "/cni.sock"},
              {"stateFile", state_file_}};
    if (prev) c["prevResult"] = json::parse(kPrevResult);
    return c;
  }

  PluginOutcome run(const std::string& command, const json& conf) {
    return runPlugin(env(command), conf.dump(), agent_.call());
  }

  static json errorOf(const PluginOutcome& o) {
    EXPECT_NE(o.exit_code, 0);
    json j = json::parse(o.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << o.out;
    return j;
  }

  testing::TempDir dir_;
  std::string state_file_ = dir_.path() + "/cni-state.json";
  FakeAgent agent_;
};

TEST_F(CniPluginTest, VersionReportsTheSupportedVersions) {
  PluginEnv e;
  e.command = "VERSION";
  for (const char* in : {R"({"cniVersion":"0.4.0"})", ""}) {
    auto o = runPlugin(e, in, agent_.call());
    EXPECT_EQ(o.exit_code, 0);
    json j = json::parse(o.out);
    EXPECT_EQ(j["cniVersion"], std::string(*in ? "0.4.0" : "1.0.0"));
    EXPECT_EQ(j["supportedVersions"], json::parse(R"(["0.3.0","0.3.1","0.4.0","1.0.0"])"));
  }
  EXPECT_TRUE(agent_.requests.empty());
}

TEST_F(CniPluginTest, AddPassesPrevResultThroughUnchanged) {
  for (const char* version : {"0.3.0", "0.3.1", "0.4.0", "1.0.0"}) {
    auto o = run("ADD", config(version));
    ASSERT_EQ(o.exit_code, 0) << o.out;
    json expected = json::parse(kPrevResult);
    expected["cniVersion"] = version;
    EXPECT_EQ(json::parse(o.out), expected) << version;
  }
}

TEST_F(CniPluginTest, AddOutputKeepsThePreviousPluginsKeyOrder) {
  const std::string stdin_bytes =
      std::string(R"({"cniVersion":"1.0.0","name":"n","type":"nodemesh-cni","agentSocket":")") +
      dir_.path() + R"(/cni.sock","prevResult":)" + kPrevResult + "}";
  auto o = runPlugin(env("ADD"), stdin_bytes, agent_.call());
  ASSERT_EQ(o.exit_code, 0);
  // Byte-level: the result is prevResult compacted, keys in the order the previous plugin wrote.
  const std::string compact = nlohmann::ordered_json::parse(kPrevResult).dump() + "\n";
  EXPECT_EQ(o.out, compact);
}

TEST_F(CniPluginTest, AddTellsTheAgentAboutThePod) {
  auto o = run("ADD", config());
  ASSERT_EQ(o.exit_code, 0) << o.out;
  ASSERT_EQ(agent_.requests.size(), 1u);
  const CniRequest& r = agent_.requests[0];
  EXPECT_EQ(r.command, CniCommand::kAdd);
  EXPECT_EQ(r.container_id, "ctr-1");
  EXPECT_EQ(r.netns, "/var/run/netns/pod1");
  EXPECT_EQ(r.if_name, "eth0");
  EXPECT_EQ(r.pod_namespace, "shop");
  EXPECT_EQ(r.pod_name, "cart-1");
  EXPECT_EQ(r.pod_uid, "uid-42");
  EXPECT_EQ(r.ips, (std::vector<std::string>{"10.199.1.5/24", "fd00:199::5/64"}));
  EXPECT_EQ(agent_.configs[0].agent_socket, dir_.path() + "/cni.sock");
}

TEST_F(CniPluginTest, WorksWithoutKubernetesArgs) {
  PluginEnv e = env("ADD");
  e.args = "";
  auto o = runPlugin(e, config().dump(), agent_.call());
  ASSERT_EQ(o.exit_code, 0) << o.out;
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_TRUE(agent_.requests[0].pod_namespace.empty());
  EXPECT_TRUE(agent_.requests[0].pod_name.empty());
}

TEST_F(CniPluginTest, AgentRefusalFailsTheAdd) {
  agent_.reply = CniReply::failure("cannot attach capture");
  auto o = run("ADD", config());
  json err = errorOf(o);
  EXPECT_EQ(err["code"], 100);
  EXPECT_EQ(err["cniVersion"], "1.0.0");
  EXPECT_NE(err["msg"].get<std::string>().find("cannot attach capture"), std::string::npos);
}

TEST_F(CniPluginTest, AgentNotEnrollingStillPasses) {
  agent_.reply = CniReply::success(false, "not in the mesh");
  auto o = run("ADD", config());
  EXPECT_EQ(o.exit_code, 0);
}

TEST_F(CniPluginTest, ExcludedNamespacesNeverReachTheAgent) {
  PluginEnv e = env("ADD");
  e.args = "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1";
  agent_.reply = CniReply::failure("must not be asked");
  auto o = runPlugin(e, config().dump(), agent_.call());
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_TRUE(agent_.requests.empty());
  // A configured list replaces the default.
  json c = config();
  c["excludeNamespaces"] = {"infra"};
  e.args = "K8S_POD_NAMESPACE=infra";
  o = runPlugin(e, c.dump(), agent_.call());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_TRUE(agent_.requests.empty());
  e.args = "K8S_POD_NAMESPACE=kube-system";
  o = runPlugin(e, c.dump(), agent_.call());
  EXPECT_NE(o.exit_code, 0);  // kube-system no longer excluded: the agent refused
}

TEST_F(CniPluginTest, AgentDownAmbientNamespaceIsTryAgainLater) {
  agent_.reply.reset();
  ASSERT_TRUE(writeCniState(state_file_, CniState{{"shop"}, {}, {}}).ok());
  json err = errorOf(run("ADD", config()));
  EXPECT_EQ(err["code"], 11);
  EXPECT_NE(err["msg"].get<std::string>().find("shop/cart-1"), std::string::npos);
}

TEST_F(CniPluginTest, AgentDownOtherNamespacePasses) {
  agent_.reply.reset();
  ASSERT_TRUE(writeCniState(state_file_, CniState{{"bank"}, {}, {}}).ok());
  auto o = run("ADD", config());
  EXPECT_EQ(o.exit_code, 0) << o.out;
  EXPECT_EQ(json::parse(o.out)["ips"][0]["address"], "10.199.1.5/24");
  EXPECT_NE(o.log.find("unavailable"), std::string::npos);
}

TEST_F(CniPluginTest, AgentDownPodOptOutAndOptIn) {
  agent_.reply.reset();
  ASSERT_TRUE(writeCniState(state_file_, CniState{{"shop"}, {}, {"shop/cart-1"}}).ok());
  EXPECT_EQ(run("ADD", config()).exit_code, 0);
  ASSERT_TRUE(writeCniState(state_file_, CniState{{}, {"shop/cart-1"}, {}}).ok());
  EXPECT_EQ(errorOf(run("ADD", config()))["code"], 11);
}

TEST_F(CniPluginTest, AgentDownWithoutStateFilePasses) {
  agent_.reply.reset();
  EXPECT_EQ(run("ADD", config()).exit_code, 0);
}

TEST_F(CniPluginTest, AgentDownWithUnreadableStateFileFailsSafe) {
  agent_.reply.reset();
  std::FILE* f = std::fopen(state_file_.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("{garbage", f);
  std::fclose(f);
  EXPECT_EQ(errorOf(run("ADD", config()))["code"], 11);
}

TEST_F(CniPluginTest, DelSucceedsWhateverTheAgentSays) {
  auto o = run("DEL", config());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_TRUE(o.out.empty());
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].command, CniCommand::kDel);
  agent_.reply.reset();
  ASSERT_TRUE(writeCniState(state_file_, CniState{{"shop"}, {}, {}}).ok());
  o = run("DEL", config());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_TRUE(o.out.empty());
  agent_.reply = CniReply::failure("unknown pod");
  EXPECT_EQ(run("DEL", config()).exit_code, 0);
}

TEST_F(CniPluginTest, DelWithoutNetnsOrPrevResultSucceeds) {
  PluginEnv e = env("DEL");
  e.netns = "";
  auto o = runPlugin(e, config("1.0.0", false).dump(), agent_.call());
  EXPECT_EQ(o.exit_code, 0) << o.out;
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_TRUE(agent_.requests[0].netns.empty());
}

TEST_F(CniPluginTest, CheckAsksTheAgent) {
  auto o = run("CHECK", config());
  EXPECT_EQ(o.exit_code, 0);
  EXPECT_TRUE(o.out.empty());
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].command, CniCommand::kCheck);
  agent_.reply = CniReply::failure("pod not captured");
  EXPECT_EQ(errorOf(run("CHECK", config()))["code"], 100);
  agent_.reply.reset();
  EXPECT_EQ(run("CHECK", config()).exit_code, 0);  // agent down: nothing to check against
}

TEST_F(CniPluginTest, CheckIsNotDefinedBefore040) {
  EXPECT_EQ(errorOf(run("CHECK", config("0.3.1")))["code"], 1);
}

TEST_F(CniPluginTest, BadEnvironmentIsCode4) {
  for (auto mutate : std::vector<void (*)(PluginEnv&)>{
           [](PluginEnv& e) { e.command = ""; },
           [](PluginEnv& e) { e.command = "UPDATE"; },
           [](PluginEnv& e) { e.container_id = ""; },
           [](PluginEnv& e) { e.netns = ""; },
           [](PluginEnv& e) { e.if_name = ""; },
           [](PluginEnv& e) { e.args = "K8S_POD_NAME"; },
           [](PluginEnv& e) { e.args = "=x;K8S_POD_NAME=a"; },
       }) {
    PluginEnv e = env("ADD");
    mutate(e);
    auto o = runPlugin(e, config().dump(), agent_.call());
    EXPECT_EQ(errorOf(o)["code"], 4) << o.out;
  }
  EXPECT_TRUE(agent_.requests.empty());
}

TEST_F(CniPluginTest, BadConfigsGetTheRightCode) {
  const struct {
    std::string stdin_bytes;
    int code;
  } cases[] = {
      {"", 6},
      {"{\"cniVersion\":", 6},
      {"[1,2]", 6},
      {R"({"name":"n"})", 7},
      {R"({"cniVersion":1,"name":"n"})", 7},
      {R"({"cniVersion":"0.2.0","name":"n"})", 1},
      {R"({"cniVersion":"2.0.0","name":"n"})", 1},
      {R"({"cniVersion":"1.0.0"})", 7},
      {R"({"cniVersion":"1.0.0","name":""})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","type":3})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","agentSocket":"relative.sock"})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","agentSocket":5})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","stateFile":""})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","excludeNamespaces":"kube-system"})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","excludeNamespaces":[1]})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","timeoutMs":0})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","timeoutMs":"5"})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","timeoutMs":600000})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":[]})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":{}}})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":5}]}})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[7]}})", 7},
      // Addresses the agent would refuse (found by fuzz/cni_fuzz.cc: the plugin passed them on
      // and the pod failed with the agent's error; fuzz/corpus/cni/crash_prev_result_bad_ip).
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"fd00:19:9:5/64"}]}})",
       7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"10.0.0.1"}]}})", 7},
      {R"({"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"10.0.0.1/33"}]}})", 7},
      // ADD without prevResult: a chained plugin cannot produce a result on its own.
      {R"({"cniVersion":"1.0.0","name":"n"})", 7},
  };
  for (const auto& c : cases) {
    auto o = runPlugin(env("ADD"), c.stdin_bytes, agent_.call());
    json err = errorOf(o);
    EXPECT_EQ(err["code"], c.code) << c.stdin_bytes << " -> " << o.out;
    EXPECT_TRUE(err["msg"].is_string() && !err["msg"].get<std::string>().empty());
    EXPECT_TRUE(err["cniVersion"].is_string());
  }
  EXPECT_TRUE(agent_.requests.empty());
}

TEST_F(CniPluginTest, ErrorsCarryTheConfigsVersion) {
  auto o =
      runPlugin(env("ADD"), R"({"cniVersion":"0.4.0","name":"n","timeoutMs":-1})", agent_.call());
  EXPECT_EQ(errorOf(o)["cniVersion"], "0.4.0");
}

TEST_F(CniPluginTest, ConfigDefaultsAndFields) {
  auto c = parsePluginConfig(R"({"cniVersion":"1.0.0","name":"n","type":"nodemesh-cni"})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->agent_socket, "/var/run/nodemesh/cni.sock");
  EXPECT_EQ(c->state_file, "/var/run/nodemesh/cni-state.json");
  EXPECT_EQ(c->exclude_namespaces, std::vector<std::string>{"kube-system"});
  EXPECT_EQ(c->timeout_ms, 5000);
  EXPECT_FALSE(c->has_prev_result);
  c = parsePluginConfig(
      R"({"cniVersion":"0.3.1","name":"n","agentSocket":"/a.sock","stateFile":"/s.json",
          "excludeNamespaces":[],"timeoutMs":250,"runtimeConfig":{"x":1},"args":{}})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->agent_socket, "/a.sock");
  EXPECT_EQ(c->state_file, "/s.json");
  EXPECT_TRUE(c->exclude_namespaces.empty());
  EXPECT_EQ(c->timeout_ms, 250);
}

TEST(CniArgsTest, ParsesKeyValuePairs) {
  auto a = parseCniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u;");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->at("K8S_POD_NAMESPACE"), "ns");
  EXPECT_EQ(a->at("K8S_POD_NAME"), "p");
  EXPECT_EQ(a->at("K8S_POD_UID"), "u");
  EXPECT_EQ(a->at("IgnoreUnknown"), "1");
  auto empty = parseCniArgs("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto v = parseCniArgs("A=b=c;B=");  // the value is everything after the first '='
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->at("A"), "b=c");
  EXPECT_EQ(v->at("B"), "");
  EXPECT_FALSE(parseCniArgs("A=1;junk").ok());
  EXPECT_FALSE(parseCniArgs("=1").ok());
}

// Found by fuzz/cni_fuzz.cc (its corpus keeps the input: fuzz/corpus/cni/crash_args_not_utf8):
// a pod name with bytes that are not UTF-8 reached the agent as U+FFFD, another pod's name.
TEST(CniArgsTest, RefusesControlAndNonAsciiBytes) {
  for (const std::string& args :
       {std::string("K8S_POD_NAME=cart\xb7\xc7-1"), std::string("K8S_POD_NAME=cart\0-1", 20),
        std::string("K8S_POD_NAME=a\nb"), std::string("K\x7f=1")}) {
    auto a = parseCniArgs(args);
    ASSERT_FALSE(a.ok()) << args;
    EXPECT_EQ(a.error().code, kErrInvalidEnvironment);
    EXPECT_THAT(a.error().message, ::testing::HasSubstr("not printable ASCII"));
  }
  FakeAgent agent;
  PluginEnv e;
  e.command = "ADD";
  e.container_id = "ctr-1";
  e.netns = "/var/run/netns/pod1";
  e.if_name = "eth0";
  e.args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart\xb7";
  const std::string conf =
      R"({"cniVersion":"1.0.0","name":"n","type":"nodemesh-cni","prevResult":)" +
      std::string(kPrevResult) + "}";
  const PluginOutcome o = runPlugin(e, conf, agent.call());
  EXPECT_EQ(o.exit_code, 1);  // CNI: exit 1, the error code in the error object
  EXPECT_THAT(o.out, ::testing::HasSubstr("\"code\":" + std::to_string(kErrInvalidEnvironment)))
      << o.out;
  EXPECT_TRUE(agent.requests.empty());  // the agent never hears of a mangled name
}

}  // namespace
}  // namespace nodemesh::cni
