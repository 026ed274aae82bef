// Agent::reconcile and Agent::scanDue against fakes of the pod source, the capture control and
// the tunnel: which pods get captured, when they stop being captured, and when a pass is due.
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "tests/unit/agent/agent_fakes.h"

namespace nodemesh::agent {
namespace {

using std::chrono::milliseconds;
using testing::FakeCapture;
using testing::FakeClock;
using testing::FakePodSource;
using testing::FakeTunnel;

constexpr auto kIdle = milliseconds(2000);

IpAddress ip(std::string_view text) {
  return IpAddress::parse(text).value();
}

model::Workload workload(std::string name, std::string_view address,
                         model::Protocol protocol = model::Protocol::Hbone,
                         std::string node = "node1") {
  model::Workload w;
  w.uid = "cluster1//v1/Pod/shop/" + name;
  w.name = std::move(name);
  w.namespace_name = "shop";
  w.service_account = "sa-" + w.name;
  w.workload_ips.push_back(ip(address));
  w.node = std::move(node);
  w.protocol = protocol;
  return w;
}

model::SnapshotPtr snapshotOf(std::vector<model::Workload> workloads) {
  return model::Snapshot::create(std::move(workloads), {}, {});
}

// Captures what the agent logs during a test.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%l %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  size_t count(const std::string& needle) const {
    const std::string text = out_.str();
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      ++n;
    }
    return n;
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

class AgentReconcileTest : public ::testing::Test {
 protected:
  AgentReconcileTest() : capture_(tunnel_) {
    AgentOptions options;
    options.node = "node1";
    options.idle_pass_interval = kIdle;
    agent_ = std::make_unique<Agent>(options, pods_, capture_, tunnel_, clock_);
  }

  uint64_t cookie(uint64_t id) const { return FakePodSource::cookieOf(id); }

  LogCapture log_;
  FakeClock clock_;
  FakePodSource pods_;
  FakeTunnel tunnel_;
  FakeCapture capture_;
  std::unique_ptr<Agent> agent_;  // last: destroyed (and unenrolls) before the fakes
};

TEST_F(AgentReconcileTest, EnrollsHboneWorkloadOnceItsPodAppears) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  agent_->reconcile();
  EXPECT_TRUE(capture_.enrolled.empty());
  EXPECT_TRUE(agent_->enrolledPods().empty());

  pods_.add(1, {ip("10.0.0.1")});
  agent_->reconcile();

  // The tunnel listens in the pod with the workload's identity...
  ASSERT_EQ(tunnel_.pods.count(cookie(1)), 1u);
  const tunnel::PodSpec& spec = tunnel_.pods.at(cookie(1));
  EXPECT_EQ(spec.name, "shop/a");
  ASSERT_TRUE(spec.identity.has_value());
  EXPECT_EQ(spec.identity->toString(), "spiffe://cluster.local/ns/shop/sa/sa-a");
  EXPECT_EQ(spec.ips, std::vector<IpAddress>{ip("10.0.0.1")});
  // ...and only then is its traffic steered to those listeners.
  ASSERT_EQ(capture_.enrolled.count(cookie(1)), 1u);
  EXPECT_TRUE(capture_.listeners_ready);
  EXPECT_EQ(capture_.enrolled.at(cookie(1)), std::vector<IpAddress>{ip("10.0.0.1")});
  EXPECT_EQ(capture_.fds.at(cookie(1)).inbound_v4, 101);
  EXPECT_EQ(capture_.fds.at(cookie(1)).hbone_v4, 102);
  EXPECT_EQ(capture_.fds.at(cookie(1)).outbound_v4, 100);
  EXPECT_EQ(capture_.fds.at(cookie(1)).outbound_v6, -1);

  auto enrolled = agent_->enrolledPods();
  ASSERT_EQ(enrolled.size(), 1u);
  EXPECT_EQ(enrolled[0].name, "shop/a");
  EXPECT_EQ(enrolled[0].workload_uid, "cluster1//v1/Pod/shop/a");
  EXPECT_EQ(enrolled[0].netns_cookie, cookie(1));
  EXPECT_EQ(enrolled[0].netns_path, "/var/run/netns/pod1");
  EXPECT_EQ(log_.count("enrolled pod shop/a (netns /var/run/netns/pod1"), 1u) << log_.text();
}

TEST_F(AgentReconcileTest, AddressesThatAppearLaterAreFound) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  pods_.add(1, {});  // the namespace first, its address when the CNI plugin has run
  agent_->reconcile();
  EXPECT_TRUE(capture_.enrolled.empty());
  pods_.pods[1].ips = {ip("10.0.0.1")};
  agent_->reconcile();
  EXPECT_EQ(capture_.enrolled.count(cookie(1)), 1u);
}

TEST_F(AgentReconcileTest, UnenrollsPodThatDisappears) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1"), workload("b", "10.0.0.2")}));
  pods_.add(1, {ip("10.0.0.1")});
  pods_.add(2, {ip("10.0.0.2")});
  agent_->reconcile();
  ASSERT_EQ(capture_.enrolled.size(), 2u);

  pods_.remove(1);
  agent_->reconcile();
  EXPECT_EQ(capture_.enrolled.count(cookie(1)), 0u);
  EXPECT_EQ(tunnel_.pods.count(cookie(1)), 0u);
  EXPECT_EQ(capture_.enrolled.count(cookie(2)), 1u);
  ASSERT_EQ(agent_->enrolledPods().size(), 1u);
  EXPECT_EQ(agent_->enrolledPods()[0].name, "shop/b");
  EXPECT_EQ(log_.count("unenrolled pod shop/a"), 1u);
}

TEST_F(AgentReconcileTest, UnenrollsPodWhoseWorkloadLeavesTheConfig) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1"), workload("b", "10.0.0.2")}));
  pods_.add(1, {ip("10.0.0.1")});
  pods_.add(2, {ip("10.0.0.2")});
  agent_->reconcile();
  ASSERT_EQ(capture_.enrolled.size(), 2u);

  agent_->setSnapshot(snapshotOf({workload("b", "10.0.0.2")}));
  agent_->reconcile();
  EXPECT_EQ(capture_.enrolled.count(cookie(1)), 0u);
  EXPECT_EQ(tunnel_.pods.count(cookie(1)), 0u);
  EXPECT_EQ(capture_.enrolled.count(cookie(2)), 1u);

  // Turning TCP is leaving the mesh too.
  agent_->setSnapshot(snapshotOf({workload("b", "10.0.0.2", model::Protocol::Tcp)}));
  agent_->reconcile();
  EXPECT_TRUE(capture_.enrolled.empty());
  EXPECT_TRUE(tunnel_.pods.empty());
  EXPECT_TRUE(agent_->enrolledPods().empty());
}

TEST_F(AgentReconcileTest, NeverEnrollsTcpHostNetworkOrOtherNodesWorkloads) {
  model::Workload host = workload("host", "10.0.0.3");
  host.network_mode = model::NetworkMode::HostNetwork;
  agent_->setSnapshot(snapshotOf({workload("tcp", "10.0.0.2", model::Protocol::Tcp), host,
                                  workload("far", "10.0.0.4", model::Protocol::Hbone, "node2")}));
  pods_.add(2, {ip("10.0.0.2")});
  pods_.add(3, {ip("10.0.0.3")});
  pods_.add(4, {ip("10.0.0.4")});
  for (int i = 0; i < 3; ++i) {
    agent_->reconcile();
    clock_.advance(kIdle);
  }
  EXPECT_EQ(capture_.enroll_calls, 0);
  EXPECT_TRUE(tunnel_.pods.empty());
  EXPECT_TRUE(agent_->enrolledPods().empty());
  // Nothing is wanted, so no namespace is even looked into.
  EXPECT_EQ(pods_.address_lookups, 0);
}

TEST_F(AgentReconcileTest, FailedEnrollIsUndoneRetriedAndLoggedOnce) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  pods_.add(1, {ip("10.0.0.1")});
  capture_.failures_left = 3;
  for (int i = 0; i < 3; ++i) {
    agent_->reconcile();
    EXPECT_TRUE(capture_.enrolled.empty());
    EXPECT_TRUE(tunnel_.pods.empty()) << "the listeners of a failed enrollment stay open";
    EXPECT_TRUE(agent_->enrolledPods().empty());
    EXPECT_TRUE(agent_->scanDue(false)) << "a failed enrollment waits for the next interval";
  }
  EXPECT_EQ(capture_.enroll_calls, 3);
  EXPECT_EQ(log_.count("enroll shop/a: pod map full"), 1u) << log_.text();

  agent_->reconcile();
  EXPECT_EQ(capture_.enroll_calls, 4);
  EXPECT_EQ(capture_.enrolled.count(cookie(1)), 1u);
  EXPECT_EQ(tunnel_.pods.count(cookie(1)), 1u);
  EXPECT_EQ(agent_->enrolledPods().size(), 1u);
  EXPECT_EQ(log_.count("enroll shop/a: pod map full"), 1u);
}

TEST_F(AgentReconcileTest, FirstPassForgetsWhatAnEarlierRunEnrolled) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  pods_.add(1, {ip("10.0.0.1")});
  agent_->reconcile();
  agent_->reconcile();
  ASSERT_EQ(capture_.forgets.size(), 1u);  // the first pass only
  EXPECT_EQ(capture_.forgets[0], std::set<uint64_t>{cookie(1)});
}

TEST_F(AgentReconcileTest, TwoNamespacesWithOneWorkloadsAddressEnrollOnlyOne) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  pods_.add(1, {ip("10.0.0.1")});
  agent_->reconcile();
  pods_.add(2, {ip("10.0.0.1")});
  agent_->reconcile();
  agent_->reconcile();
  EXPECT_EQ(capture_.enrolled.size(), 1u);
  EXPECT_EQ(capture_.enrolled.count(cookie(1)), 1u);
}

TEST_F(AgentReconcileTest, DestroyingTheAgentUnenrollsEveryPod) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1"), workload("b", "10.0.0.2")}));
  pods_.add(1, {ip("10.0.0.1")});
  pods_.add(2, {ip("10.0.0.2")});
  agent_->reconcile();
  ASSERT_EQ(capture_.enrolled.size(), 2u);
  agent_.reset();
  EXPECT_TRUE(capture_.enrolled.empty());
  EXPECT_TRUE(tunnel_.pods.empty());
}

// ---- scanDue: when a pass runs -------------------------------------------------------------

TEST_F(AgentReconcileTest, FirstPassIsDueAtOnce) {
  EXPECT_TRUE(agent_->scanDue(false));
}

TEST_F(AgentReconcileTest, SteadyStatePassesEveryIdleIntervalOrOnChange) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  pods_.add(1, {ip("10.0.0.1")});
  agent_->reconcile();
  ASSERT_EQ(capture_.enrolled.size(), 1u);
  // The pass that enrolled the pod began with it missing: one more pass, then steady state.
  EXPECT_TRUE(agent_->scanDue(false));
  agent_->reconcile();

  EXPECT_FALSE(agent_->scanDue(false));
  EXPECT_TRUE(agent_->scanDue(true)) << "the pod source saw a pod come or go";
  clock_.advance(kIdle - milliseconds(1));
  EXPECT_FALSE(agent_->scanDue(false));
  clock_.advance(milliseconds(1));
  EXPECT_TRUE(agent_->scanDue(false)) << "the idle interval passed";

  agent_->reconcile();
  EXPECT_FALSE(agent_->scanDue(false));
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  EXPECT_TRUE(agent_->scanDue(false)) << "a new config";
  agent_->reconcile();
  EXPECT_FALSE(agent_->scanDue(false));
}

TEST_F(AgentReconcileTest, PassesRunContinuouslyWhileAWorkloadWaitsForItsPod) {
  agent_->setSnapshot(snapshotOf({workload("a", "10.0.0.1")}));
  agent_->reconcile();
  EXPECT_TRUE(agent_->scanDue(false));
  EXPECT_EQ(pods_.searches.back(), true) << "the source is told to look everywhere";
  pods_.add(1, {ip("10.0.0.1")});
  agent_->reconcile();  // enrolls it
  agent_->reconcile();
  EXPECT_EQ(pods_.searches.back(), false) << "everything enrolled: the cheap look will do";
  EXPECT_FALSE(agent_->scanDue(false));
  EXPECT_EQ(agent_->passes(), 3u);
}

}  // namespace
}  // namespace nodemesh::agent
