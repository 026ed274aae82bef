#include "config/local/local_file_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nodemesh::config {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A reload normally lands ~100 ms (the debounce) after a change; the deadline only bounds how
// long a broken watcher makes a test wait before it fails.
constexpr auto kDeadline = std::chrono::seconds(5);

bool waitFor(const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string config(int workloads) {
  std::string yaml = "workloads:\n";
  for (int i = 0; i < workloads; ++i) {
    yaml += "- uid: w" + std::to_string(i) + "\n  namespace: shop\n  workloadIps: [\"10.0.0." +
            std::to_string(i + 1) + "\"]\n";
  }
  return yaml;
}

const std::string kBad =
    "workloads:\n- uid: w0\n  namespace: shop\n  workloadIps: [\"10.0.0.300\"]\n"
    "  colour: blue\n";

// Records what the source delivers; deliveries come from the source's thread.
class Recorder {
 public:
  ConfigSource::UpdateCallback callback() {
    return [this](std::shared_ptr<const model::Snapshot> s) {
      std::lock_guard lock(mu_);
      snapshots_.push_back(std::move(s));
    };
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return snapshots_.size();
  }
  std::shared_ptr<const model::Snapshot> last() const {
    std::lock_guard lock(mu_);
    return snapshots_.empty() ? nullptr : snapshots_.back();
  }
  bool lastHas(size_t workloads) const {
    auto s = last();
    return s && s->workloads().size() == workloads;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const model::Snapshot>> snapshots_;
};

class LocalFileSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nodemesh-config-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "config.yaml").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static void writeFile(const fs::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::trunc);
    out << content;
  }
  // What editors do: write a temporary file next to the target, then rename it over.
  void replaceFile(const std::string& content) {
    fs::path tmp = dir_ / ".config.yaml.tmp";
    writeFile(tmp, content);
    fs::rename(tmp, path_);
  }

  fs::path dir_;
  std::string path_;
  Recorder recorder_;
};

TEST_F(LocalFileSourceTest, StartDeliversTheFirstSnapshot) {
  writeFile(path_, config(2));
  LocalFileSource source(path_);
  Status status = source.start(recorder_.callback());
  ASSERT_TRUE(status.ok()) << status.error().message;
  ASSERT_EQ(recorder_.count(), 1u);  // before start() returned
  EXPECT_EQ(recorder_.last()->summary(), "2 workloads, 0 services, 0 policies");
  EXPECT_EQ(source.current(), recorder_.last());
  EXPECT_EQ(source.rejectedReloads(), 0u);
  EXPECT_EQ(source.lastError(), "");
  source.stop();
  source.stop();  // idempotent
}

TEST_F(LocalFileSourceTest, StartFailsWithEveryProblem) {
  writeFile(path_, kBad);
  LocalFileSource source(path_);
  Status status = source.start(recorder_.callback());
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(recorder_.count(), 0u);
  EXPECT_EQ(source.current(), nullptr);
  // One "file:line: reason" per problem, in file order.
  EXPECT_EQ(status.error().message,
            path_ + ":4: workloads[0].workloadIps[0]: invalid IP address '10.0.0.300'\n" + path_ +
                ":5: workloads[0]: unknown field 'colour' in workload; allowed: uid, name, "
                "namespace, serviceAccount, workloadIps, protocol, node, network, hostname, "
                "waypoint, networkGateway, networkMode, trustDomain, clusterId, canonicalName, "
                "canonicalRevision, workloadName, workloadType, locality, status, nativeTunnel, "
                "applicationTunnel, authorizationPolicies, services, capacity");
}

TEST_F(LocalFileSourceTest, StartFailsWhenTheFileIsMissing) {
  LocalFileSource source(path_);
  Status status = source.start(recorder_.callback());
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.error().message, HasSubstr(path_ + ":0: cannot open config file"));
  EXPECT_EQ(recorder_.count(), 0u);
}

TEST_F(LocalFileSourceTest, ReloadsWhenTheFileIsRewrittenInPlace) {
  writeFile(path_, config(1));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  writeFile(path_, config(3));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(3); }));
  EXPECT_EQ(source.current()->workloads().size(), 3u);
  EXPECT_EQ(source.acceptedReloads(), 1u);
}

TEST_F(LocalFileSourceTest, ReloadsWhenTheFileIsReplacedByRename) {
  writeFile(path_, config(1));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  replaceFile(config(2));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(2); }));
  // The watch follows the name, not the replaced inode: a second replacement is seen too.
  replaceFile(config(4));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(4); }));
}

TEST_F(LocalFileSourceTest, ReloadsWhenAConfigMapSymlinkIsSwapped) {
  // The kubelet's layout: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>/, and an
  // update renames a new ..data link over the old one; config.yaml itself never changes.
  fs::create_directory(dir_ / "..v1");
  writeFile(dir_ / "..v1" / "config.yaml", config(1));
  fs::create_directory_symlink("..v1", dir_ / "..data");
  fs::create_symlink("..data/config.yaml", path_);
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  ASSERT_TRUE(recorder_.lastHas(1));

  fs::create_directory(dir_ / "..v2");
  writeFile(dir_ / "..v2" / "config.yaml", config(2));
  fs::create_directory_symlink("..v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  fs::remove_all(dir_ / "..v1");
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(2); }));
}

TEST_F(LocalFileSourceTest, RejectedVersionKeepsTheLastGoodSnapshot) {
  writeFile(path_, config(2));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  auto good = source.current();

  replaceFile(kBad);
  ASSERT_TRUE(waitFor([&] { return source.rejectedReloads() == 1; }));
  EXPECT_EQ(recorder_.count(), 1u);  // not called for the bad version
  EXPECT_EQ(source.current(), good);
  EXPECT_THAT(source.lastError(),
              HasSubstr(path_ + ":4: workloads[0].workloadIps[0]: invalid IP address"));
  EXPECT_THAT(source.lastError(), HasSubstr(path_ + ":5: workloads[0]: unknown field 'colour'"));

  // A deleted file is rejected the same way.
  fs::remove(path_);
  ASSERT_TRUE(waitFor([&] { return source.rejectedReloads() == 2; }));
  EXPECT_THAT(source.lastError(), HasSubstr(path_ + ":0: cannot open config file"));
  EXPECT_EQ(source.current(), good);

  // A fixed version is accepted again and clears the error.
  replaceFile(config(5));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(5); }));
  EXPECT_EQ(recorder_.count(), 2u);
  EXPECT_EQ(source.lastError(), "");
  EXPECT_EQ(source.rejectedReloads(), 2u);
}

// Routes reload like the rest of the file: a good change is delivered, a bad route keeps the
// snapshot (and its routes) that was in force.
TEST_F(LocalFileSourceTest, RoutesReloadAndABadRouteKeepsThePreviousSnapshot) {
  auto with_route = [](const std::string& path_value) {
    return config(1) +
           "httpRoutes:\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n"
           "  metadata: {name: r, namespace: shop}\n  spec:\n    rules:\n"
           "    - matches: [{path: {value: " +
           path_value + "}}]\n";
  };
  writeFile(path_, with_route("/v1"));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  ASSERT_EQ(source.current()->httpRoutes().size(), 1u);

  replaceFile(with_route("/v2"));
  ASSERT_TRUE(waitFor([&] { return recorder_.count() == 2; }));
  auto good = source.current();
  EXPECT_EQ(good->httpRoutes()[0].rules[0].matches[0].path.value, "/v2");

  replaceFile(with_route("v3-without-slash"));
  ASSERT_TRUE(waitFor([&] { return source.rejectedReloads() == 1; }));
  EXPECT_EQ(recorder_.count(), 2u);
  EXPECT_EQ(source.current(), good);
  EXPECT_THAT(source.lastError(),
              HasSubstr(path_ + ":11: httpRoutes[0].spec.rules[0].matches[0].path.value: invalid "
                                "path: must start with '/'"));
}

TEST_F(LocalFileSourceTest, UnchangedContentIsNotDeliveredAgain) {
  writeFile(path_, config(1));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  replaceFile(config(1));  // same bytes, new inode
  // The watcher read it (in a debounce window of its own) and found nothing new.
  ASSERT_TRUE(waitFor([&] { return source.unchangedReads() == 1; }));
  EXPECT_EQ(recorder_.count(), 1u);
  EXPECT_EQ(source.acceptedReloads(), 0u);
  replaceFile(config(2));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(2); }));
  EXPECT_EQ(recorder_.count(), 2u);
}

TEST_F(LocalFileSourceTest, IgnoresOtherFilesInTheDirectory) {
  writeFile(path_, config(1));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  writeFile(dir_ / "other.yaml", kBad);
  writeFile(path_, config(2));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(2); }));
  EXPECT_EQ(source.rejectedReloads(), 0u);
}

TEST_F(LocalFileSourceTest, StopWithoutStartAndDestroyWhileRunning) {
  LocalFileSource never_started(path_);
  never_started.stop();
  writeFile(path_, config(1));
  auto running = std::make_unique<LocalFileSource>(path_);
  ASSERT_TRUE(running->start(recorder_.callback()).ok());
  EXPECT_FALSE(running->start(recorder_.callback()).ok());  // already started
  running.reset();                                          // the destructor stops the thread
  writeFile(path_, config(2));
  EXPECT_EQ(recorder_.count(), 1u);
}

TEST_F(LocalFileSourceTest, CanRestartAfterStop) {
  writeFile(path_, config(1));
  LocalFileSource source(path_);
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  source.stop();
  writeFile(path_, config(2));
  ASSERT_TRUE(source.start(recorder_.callback()).ok());
  EXPECT_TRUE(recorder_.lastHas(2));
  writeFile(path_, config(3));
  ASSERT_TRUE(waitFor([&] { return recorder_.lastHas(3); }));
}

}  // namespace
}  // namespace nodemesh::config
