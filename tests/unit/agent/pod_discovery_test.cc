#include "agent/pod_discovery.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace nodemesh::agent {
namespace {

namespace fs = std::filesystem;

// A netns directory of plain files (stat gives each an inode, as a bind mount would) and a
// /proc look-alike whose ns/net links carry made-up inodes.
class PodDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "nm-discovery-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "netns");
    fs::create_directories(root_ / "proc");
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
  void process(const std::string& pid, const std::string& link) {
    fs::create_directories(root_ / "proc" / pid / "ns");
    fs::create_symlink(link, root_ / "proc" / pid / "ns" / "net");
  }
  std::vector<NetnsCandidate> list(bool processes) {
    return listNetns((root_ / "netns").string(), (root_ / "proc").string(), processes);
  }

  fs::path root_;
};

const NetnsCandidate* find(const std::vector<NetnsCandidate>& all, uint64_t inode) {
  auto it = std::find_if(all.begin(), all.end(),
                         [&](const NetnsCandidate& c) { return c.inode == inode; });
  return it == all.end() ? nullptr : &*it;
}

TEST_F(PodDiscoveryTest, FindsNamedAndProcessNamespacesOnceEach) {
  const uint64_t pod_a = name("cni-a");
  const uint64_t pod_b = name("cni-b");
  process("100", "net:[900001]");
  process("101", "net:[900001]");  // a second process in the same namespace
  process("102", "net:[900002]");
  process("103", "net:[" + std::to_string(pod_a) + "]");  // named already: listed once, named
  process("104", "mnt:[900003]");                         // not a network namespace
  fs::create_directories(root_ / "proc" / "self");        // not a pid

  const auto all = list(true);
  ASSERT_EQ(all.size(), 4u);
  ASSERT_NE(find(all, pod_a), nullptr);
  EXPECT_TRUE(find(all, pod_a)->named);
  EXPECT_EQ(find(all, pod_a)->path, (root_ / "netns" / "cni-a").string());
  ASSERT_NE(find(all, pod_b), nullptr);
  EXPECT_TRUE(find(all, pod_b)->named);
  ASSERT_NE(find(all, 900001), nullptr);
  EXPECT_FALSE(find(all, 900001)->named);
  EXPECT_EQ(find(all, 900001)->path, (root_ / "proc" / "100" / "ns" / "net").string());
  ASSERT_NE(find(all, 900002), nullptr);
  EXPECT_FALSE(find(all, 900002)->named);
}

TEST_F(PodDiscoveryTest, WithoutProcessesListsOnlyNamedNamespaces) {
  const uint64_t pod_a = name("cni-a");
  process("100", "net:[900001]");
  const auto named = list(false);
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named[0].inode, pod_a);
  EXPECT_TRUE(named[0].named);
}

// --netns-prefix: another cluster's named namespace is left out, and so is a process in it;
// a process in a namespace nobody named is still found.
TEST_F(PodDiscoveryTest, NamePrefixLeavesOutOtherNamesAndTheirProcesses) {
  const uint64_t ours = name("nmt1x0-p-cart");
  const uint64_t theirs = name("nmt2x0-p-cart");
  process("100", "net:[" + std::to_string(theirs) + "]");
  process("101", "net:[900001]");
  const auto all =
      listNetns((root_ / "netns").string(), (root_ / "proc").string(), true, "nmt1x0-");
  ASSERT_EQ(all.size(), 2u);
  ASSERT_NE(find(all, ours), nullptr);
  EXPECT_TRUE(find(all, ours)->named);
  EXPECT_EQ(find(all, theirs), nullptr);
  ASSERT_NE(find(all, 900001), nullptr);
  EXPECT_EQ(list(true).size(), 3u) << "without a prefix: every namespace";
}

TEST_F(PodDiscoveryTest, MissingDirectoriesListNothing) {
  EXPECT_TRUE(
      listNetns((root_ / "absent").string(), (root_ / "absent-proc").string(), true).empty());
}

// The watch reports a name created, renamed or removed once, and nothing in between; it reports
// a change on every call while it cannot watch (the directory is missing), and the call that
// puts it back in place reports one too.
TEST_F(PodDiscoveryTest, NetnsDirWatchReportsNamesComingAndGoing) {
  const fs::path dir = root_ / "netns";
  NetnsDirWatch watch(dir.string());
  EXPECT_TRUE(watch.changed()) << "the first call: before it, nothing is known";
  EXPECT_TRUE(watch.active());
  EXPECT_FALSE(watch.changed());

  name("pod-a");
  EXPECT_TRUE(watch.changed());
  EXPECT_FALSE(watch.changed());

  fs::rename(dir / "pod-a", dir / "pod-b");
  EXPECT_TRUE(watch.changed());
  EXPECT_FALSE(watch.changed());

  fs::remove(dir / "pod-b");
  EXPECT_TRUE(watch.changed());
  EXPECT_FALSE(watch.changed());

  // A file's contents changing is not a namespace coming or going.
  name("pod-c");
  EXPECT_TRUE(watch.changed());
  std::ofstream(dir / "pod-c") << "x";
  EXPECT_FALSE(watch.changed());

  fs::remove_all(dir);
  EXPECT_TRUE(watch.changed());
  EXPECT_TRUE(watch.changed()) << "no directory: nothing to watch, the caller must look";
  EXPECT_FALSE(watch.active());
  EXPECT_TRUE(watch.changed());

  fs::create_directories(dir);
  EXPECT_TRUE(watch.changed()) << "watched again: what happened before is unknown";
  EXPECT_TRUE(watch.active());
  EXPECT_FALSE(watch.changed());
  name("pod-d");
  EXPECT_TRUE(watch.changed());
}

// With a prefix, names of other clusters coming and going are not changes.
TEST_F(PodDiscoveryTest, NetnsDirWatchWithAPrefixIgnoresOtherNames) {
  const fs::path dir = root_ / "netns";
  NetnsDirWatch watch(dir.string(), "nmt1x0-");
  EXPECT_TRUE(watch.changed());
  name("nmt2x0-p-cart");
  fs::remove(dir / "nmt2x0-p-cart");
  EXPECT_FALSE(watch.changed());
  name("nmt1x0-p-cart");
  EXPECT_TRUE(watch.changed());
  fs::remove(dir / "nmt1x0-p-cart");
  EXPECT_TRUE(watch.changed());
}

}  // namespace
}  // namespace nodemesh::agent
