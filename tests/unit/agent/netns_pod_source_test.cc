// NetnsPodSource's pacing: when it pays for the process pass (/proc/*/ns/net), and what it
// reports about namespaces it did not look for. A netns directory of plain files and a /proc
// look-alike, as in pod_discovery_test.cc.
#include "agent/netns_pod_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "tests/unit/agent/agent_fakes.h"

namespace nodemesh::agent {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr auto kProcessInterval = milliseconds(2000);

class NetnsPodSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nm-pod-source-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "netns");
    fs::create_directories(root_ / "proc");
    NetnsPodSourceOptions options;
    options.netns_dir = (root_ / "netns").string();
    options.proc_dir = (root_ / "proc").string();
    options.process_scan_interval = kProcessInterval;
    source_ = std::make_unique<NetnsPodSource>(options, clock_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  uint64_t name(const std::string& n) {
    std::ofstream(root_ / "netns" / n) << "";
    struct stat st {};
    EXPECT_EQ(::stat((root_ / "netns" / n).c_str(), &st), 0);
    return st.st_ino;
  }
  void process(const std::string& pid, uint64_t inode) {
    fs::create_directories(root_ / "proc" / pid / "ns");
    fs::create_symlink("net:[" + std::to_string(inode) + "]", root_ / "proc" / pid / "ns" / "net");
  }
  std::set<uint64_t> ids(bool searching) {
    std::set<uint64_t> out;
    for (const auto& ns : source_->list(searching)) out.insert(ns.id);
    return out;
  }

  fs::path root_;
  testing::FakeClock clock_;
  std::unique_ptr<NetnsPodSource> source_;
};

TEST_F(NetnsPodSourceTest, ProcessPassOnFirstListThenEveryIntervalOrWhileSearching) {
  const uint64_t named = name("cni-a");
  process("100", 900001);
  EXPECT_EQ(ids(false), (std::set<uint64_t>{named, 900001}));

  // A process namespace that appears between process passes is not seen...
  process("101", 900002);
  EXPECT_EQ(ids(false), (std::set<uint64_t>{named, 900001}));
  // ...unless the agent is searching for a pod...
  EXPECT_EQ(ids(true), (std::set<uint64_t>{named, 900001, 900002}));
  // ...or the interval passed.
  process("102", 900003);
  clock_.advance(kProcessInterval - milliseconds(1));
  EXPECT_EQ(ids(false).count(900003), 0u);
  clock_.advance(milliseconds(1));
  EXPECT_EQ(ids(false).count(900003), 1u);
}

TEST_F(NetnsPodSourceTest, ProcessNamespacesStayListedUntilAProcessPassMissesThem) {
  name("cni-a");
  process("100", 900001);
  ASSERT_EQ(ids(false).count(900001), 1u);
  fs::remove_all(root_ / "proc" / "100");
  EXPECT_EQ(ids(false).count(900001), 1u) << "not looked for, so not reported gone";
  clock_.advance(kProcessInterval);
  EXPECT_EQ(ids(false).count(900001), 0u);
}

TEST_F(NetnsPodSourceTest, ANameThatDisappearsTriggersAProcessPass) {
  const uint64_t named = name("cni-a");
  ASSERT_EQ(ids(false), std::set<uint64_t>{named});
  // The name goes, but a process still lives in the namespace: it must not be reported gone.
  process("100", named);
  fs::remove(root_ / "netns" / "cni-a");
  auto listed = source_->list(false);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, named);
  EXPECT_EQ(listed[0].path, (root_ / "proc" / "100" / "ns" / "net").string());
}

}  // namespace
}  // namespace nodemesh::agent
