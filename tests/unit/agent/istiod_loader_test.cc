#include "agent/istiod_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace nodemesh::agent {
namespace {

using ::testing::HasSubstr;

// The real module is not loaded here: this binary links the xDS code (and its protobuf
// descriptors) itself, and a second copy of them in one process is a protobuf fatal error. The
// agent loads it in the e2e tests (XdsAgentTest).

TEST(IstiodLoaderTest, DefaultPathIsTheLibFolderBesideTheBinaryFolder) {
  auto path = defaultIstiodModulePath();
  ASSERT_TRUE(path) << path.error().message;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe");
  EXPECT_EQ(*path,
            (exe.parent_path().parent_path() / "lib/nodemesh/libnodemesh-istiod.so").string());
}

TEST(IstiodLoaderTest, MissingFileNamesThePathAndTheFlag) {
  auto loaded = loadIstiodModule("/nonexistent/libnodemesh-istiod.so");
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message,
              HasSubstr("cannot load the istiod module /nonexistent/libnodemesh-istiod.so"));
  EXPECT_THAT(loaded.error().message, HasSubstr("--istiod-module"));
}

TEST(IstiodLoaderTest, AFileThatIsNoSharedObjectIsRefusedWithTheLoadersReason) {
  testing::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.path() + "/libnodemesh-istiod.so";
  std::ofstream(file) << std::string(256, '#') << "\nnot an ELF file\n";
  auto loaded = loadIstiodModule(file);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("cannot load the istiod module " + file));
  EXPECT_THAT(loaded.error().message, HasSubstr("invalid ELF header"));
}

TEST(IstiodLoaderTest, ASharedObjectWithoutTheEntryPointIsNoModule) {
  // zlib: a shared object every test machine has (the agent's libraries need it).
  auto loaded = loadIstiodModule("libz.so.1");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().message, "libz.so.1 is not an istiod module: no nodemesh_istiod_module");
}

TEST(IstiodLoaderTest, AModuleOfAnotherBuildIsRefused) {
  auto loaded = loadIstiodModule(NODEMESH_REFUSING_ISTIOD_MODULE);
  ASSERT_FALSE(loaded);
  EXPECT_THAT(loaded.error().message, HasSubstr("belongs to another build of nodemesh-agent"));
  EXPECT_THAT(loaded.error().message, HasSubstr(NODEMESH_REFUSING_ISTIOD_MODULE));
}

}  // namespace
}  // namespace nodemesh::agent
