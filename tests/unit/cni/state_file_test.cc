#include "cni/state_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>

#include "tests/support/temp_dir.h"

namespace nodemesh::cni {
namespace {

TEST(CniStateFileTest, WriteThenReadGivesTheSameState) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/sub/cni-state.json";
  CniState state;
  state.ambient_namespaces = {"shop", "bank"};
  state.ambient_pods = {"default/legacy"};
  state.opt_out_pods = {"shop/debug-0"};
  ASSERT_TRUE(writeCniState(path, state).ok());
  auto read = readCniState(path);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(*read, state);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(CniStateFileTest, RewriteReplacesTheWholeFileAndLeavesNoTemporaries) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/cni-state.json";
  ASSERT_TRUE(writeCniState(path, CniState{{"a", "b", "c"}, {}, {}}).ok());
  ASSERT_TRUE(writeCniState(path, CniState{{"z"}, {}, {}}).ok());
  auto read = readCniState(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->ambient_namespaces, std::vector<std::string>{"z"});
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(CniStateFileTest, MissingFileIsEnoent) {
  testing::TempDir dir;
  auto read = readCniState(dir.path() + "/none.json");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().code, ENOENT);
}

TEST(CniStateFileTest, BadFilesAreErrorsThatSayWhy) {
  const struct {
    const char* text;
    const char* expected;
  } cases[] = {
      {"", "not valid JSON"},
      {"[]", "not a JSON object"},
      {R"({"ambientNamespaces":[]})", "\"version\""},
      {R"({"version":2,"ambientNamespaces":[]})", "version 2"},
      {R"({"version":1})", "\"ambientNamespaces\" is missing"},
      {R"({"version":1,"ambientNamespaces":"shop"})", "not an array"},
      {R"({"version":1,"ambientNamespaces":["shop",3]})", "not a non-empty string"},
      {R"({"version":1,"ambientNamespaces":[""]})", "not a non-empty string"},
      {R"({"version":1,"ambientNamespaces":[],"optOutPods":{}})", "\"optOutPods\""},
  };
  for (const auto& c : cases) {
    auto s = decodeCniState(c.text);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_NE(s.error().message.find(c.expected), std::string::npos)
        << c.text << " -> " << s.error().message;
  }
}

TEST(CniStateFileTest, RequiresMeshFollowsOptInAndOptOut) {
  CniState state{{"shop"}, {"default/legacy"}, {"shop/debug-0"}};
  EXPECT_TRUE(state.requiresMesh("shop", "cart-1"));
  EXPECT_TRUE(state.requiresMesh("shop", ""));  // no pod name from the runtime: the namespace
  EXPECT_FALSE(state.requiresMesh("shop", "debug-0"));
  EXPECT_TRUE(state.requiresMesh("default", "legacy"));
  EXPECT_FALSE(state.requiresMesh("default", "other"));
  EXPECT_FALSE(state.requiresMesh("", ""));
}

}  // namespace
}  // namespace nodemesh::cni
