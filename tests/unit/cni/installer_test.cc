#include "cni/installer.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/fd.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::cni {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// A conflist the way a primary CNI writes it: its own indentation, key order and a trailing
// space, which a re-serialisation would not reproduce.
constexpr const char* kConflist =
    "{\n"
    "    \"name\": \"k8s-pod-network\",\n"
    "    \"cniVersion\": \"0.3.1\",\n"
    "    \"plugins\": [\n"
    "        {\"type\": \"calico\", \"ipam\": {\"type\": \"calico-ipam\"}, \"mtu\": 1440},\n"
    "        {\"type\": \"portmap\", \"snat\": true, \"capabilities\": {\"portMappings\": true}}\n"
    "    ] \n"
    "}\n";

constexpr const char* kConf =
    "{\"cniVersion\":\"0.4.0\",\"name\":\"mynet\",\"type\":\"bridge\",\"bridge\":\"cni0\","
    "\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.199.0.0/24\"}}";

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

int countOurs(const json& conflist) {
  int n = 0;
  for (const auto& p : conflist["plugins"]) n += p.value("type", "") == "nodemesh-cni" ? 1 : 0;
  return n;
}

class CniInstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(confDir());
    fs::create_directories(binDir());
    options_.conf_dir = confDir();
    options_.bin_dir = binDir();
    options_.plugin_fields = {{"agentSocket", "/run/x.sock"}};
  }
  std::string confDir() const { return dir_.path() + "/net.d"; }
  std::string binDir() const { return dir_.path() + "/bin"; }

  testing::TempDir dir_;
  InstallOptions options_;
};

TEST(CniPrimaryConfigTest, FirstCniFileInLexicalOrder) {
  EXPECT_EQ(pickPrimaryConfig({"20-b.conflist", "10-a.conf", "README", "05-x.yaml"}), "10-a.conf");
  EXPECT_EQ(pickPrimaryConfig({"99-z.json", "50-m.conflist"}), "50-m.conflist");
  EXPECT_EQ(pickPrimaryConfig({".nodemesh-cni.orig", ".nodemesh-cni.state", "notes.txt"}), "");
  EXPECT_EQ(pickPrimaryConfig({}), "");
}

TEST(CniInsertPluginTest, AppendsOnceAtTheEnd) {
  auto once = insertPlugin(kConflist, json{{"timeoutMs", 100}});
  ASSERT_TRUE(once.ok()) << once.error().message;
  ASSERT_TRUE(once->changed);
  json j = json::parse(once->bytes);
  ASSERT_EQ(j["plugins"].size(), 3u);
  EXPECT_EQ(j["plugins"][0]["type"], "calico");
  EXPECT_EQ(j["plugins"][1]["type"], "portmap");
  EXPECT_EQ(j["plugins"][2], json({{"type", "nodemesh-cni"}, {"timeoutMs", 100}}));
  EXPECT_EQ(j["name"], "k8s-pod-network");
  auto twice = insertPlugin(once->bytes, json::object());
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->changed);
}

TEST(CniInsertPluginTest, ConfBecomesAConflist) {
  auto out = insertPlugin(kConf, json::object());
  ASSERT_TRUE(out.ok()) << out.error().message;
  json j = json::parse(out->bytes);
  EXPECT_EQ(j["cniVersion"], "0.4.0");
  EXPECT_EQ(j["name"], "mynet");
  ASSERT_EQ(j["plugins"].size(), 2u);
  EXPECT_EQ(j["plugins"][0], json::parse(kConf));  // the conf itself, unchanged
  EXPECT_EQ(j["plugins"][1]["type"], "nodemesh-cni");
}

TEST(CniInsertPluginTest, BrokenConfigsAreErrors) {
  for (const char* bad : {"", "{", "[]", R"({"plugins":{}})", R"({"plugins":[1]})"}) {
    EXPECT_FALSE(insertPlugin(bad, json::object()).ok()) << bad;
    EXPECT_FALSE(removePlugin(bad).ok()) << bad;
  }
}

TEST(CniInsertPluginTest, RemoveTakesOutOnlyOurs) {
  auto in = insertPlugin(kConflist, json::object());
  ASSERT_TRUE(in.ok());
  auto out = removePlugin(in->bytes);
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(out->changed);
  EXPECT_EQ(json::parse(out->bytes), json::parse(kConflist));
  auto again = removePlugin(out->bytes);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
}

TEST_F(CniInstallerTest, InstallThenUninstallIsByteIdentical) {
  const std::string primary = confDir() + "/10-calico.conflist";
  writeAll(primary, kConflist);
  writeAll(confDir() + "/20-other.conflist", "{\"plugins\":[]}");
  ASSERT_TRUE(install(options_).ok());
  json installed = json::parse(readAll(primary));
  EXPECT_EQ(countOurs(installed), 1);
  EXPECT_EQ(installed["plugins"].back()["agentSocket"], "/run/x.sock");
  EXPECT_EQ(readAll(confDir() + "/20-other.conflist"), "{\"plugins\":[]}");  // not the primary
  // Idempotent: a second install changes nothing.
  const std::string after_first = readAll(primary);
  ASSERT_TRUE(install(options_).ok());
  EXPECT_EQ(readAll(primary), after_first);

  ASSERT_TRUE(uninstall(options_).ok());
  EXPECT_EQ(readAll(primary), kConflist);
  EXPECT_EQ(listDir(confDir()),
            (std::vector<std::string>{"10-calico.conflist", "20-other.conflist"}));
}

TEST_F(CniInstallerTest, ConfIsConvertedAndRestoredByteIdentical) {
  writeAll(confDir() + "/10-bridge.conf", kConf);
  ASSERT_TRUE(install(options_).ok());
  EXPECT_EQ(listDir(confDir()),
            (std::vector<std::string>{".nodemesh-cni.orig", ".nodemesh-cni.state",
                                      "10-bridge.conflist"}));
  json j = json::parse(readAll(confDir() + "/10-bridge.conflist"));
  EXPECT_EQ(j["plugins"][0], json::parse(kConf));
  EXPECT_EQ(countOurs(j), 1);
  ASSERT_TRUE(install(options_).ok());  // the .conflist is now the primary: no second entry
  EXPECT_EQ(countOurs(json::parse(readAll(confDir() + "/10-bridge.conflist"))), 1);

  ASSERT_TRUE(uninstall(options_).ok());
  EXPECT_EQ(listDir(confDir()), std::vector<std::string>{"10-bridge.conf"});
  EXPECT_EQ(readAll(confDir() + "/10-bridge.conf"), kConf);
}

TEST_F(CniInstallerTest, PrimaryRewriteIsReinsertedAndUninstallRestoresTheNewVersion) {
  const std::string primary = confDir() + "/10-calico.conflist";
  writeAll(primary, kConflist);
  ASSERT_TRUE(installConfig(options_).ok());
  // The primary CNI writes its file again (an upgrade), without our entry.
  std::string rewritten = kConflist;
  rewritten.replace(rewritten.find("1440"), 4, "1400");
  writeAll(primary, rewritten);
  ASSERT_TRUE(installConfig(options_).ok());
  EXPECT_EQ(countOurs(json::parse(readAll(primary))), 1);
  ASSERT_TRUE(uninstall(options_).ok());
  EXPECT_EQ(readAll(primary), rewritten);
}

TEST_F(CniInstallerTest, UninstallAfterAForeignEditOnlyRemovesOurEntry) {
  const std::string primary = confDir() + "/10-calico.conflist";
  writeAll(primary, kConflist);
  ASSERT_TRUE(installConfig(options_).ok());
  json j = json::parse(readAll(primary));
  j["plugins"].insert(j["plugins"].begin(), json{{"type", "tuning"}});
  writeAll(primary, j.dump());
  ASSERT_TRUE(uninstall(options_).ok());
  json after = json::parse(readAll(primary));
  EXPECT_EQ(countOurs(after), 0);
  EXPECT_EQ(after["plugins"][0]["type"], "tuning");
  EXPECT_EQ(after["plugins"].size(), 3u);
}

TEST_F(CniInstallerTest, NewPrimaryTakesOverAndTheOldOneIsRestored) {
  writeAll(confDir() + "/20-b.conflist", kConflist);
  ASSERT_TRUE(installConfig(options_).ok());
  writeAll(confDir() + "/10-a.conf", kConf);
  ASSERT_TRUE(installConfig(options_).ok());
  EXPECT_EQ(readAll(confDir() + "/20-b.conflist"), kConflist);
  EXPECT_EQ(countOurs(json::parse(readAll(confDir() + "/10-a.conflist"))), 1);
  ASSERT_TRUE(uninstall(options_).ok());
  EXPECT_EQ(readAll(confDir() + "/10-a.conf"), kConf);
  EXPECT_FALSE(fs::exists(confDir() + "/10-a.conflist"));
}

TEST_F(CniInstallerTest, BrokenPrimaryIsLeftAloneWithAnError) {
  writeAll(confDir() + "/10-broken.conflist", "{\"plugins\": [");
  auto s = installConfig(options_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("10-broken.conflist"), std::string::npos);
  EXPECT_EQ(readAll(confDir() + "/10-broken.conflist"), "{\"plugins\": [");
  EXPECT_EQ(listDir(confDir()), std::vector<std::string>{"10-broken.conflist"});
}

TEST_F(CniInstallerTest, EmptyConfDirIsEnoent) {
  auto s = installConfig(options_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOENT);
}

TEST_F(CniInstallerTest, BinaryIsCopiedExecutableAndRemovedOnUninstall) {
  writeAll(confDir() + "/10-calico.conflist", kConflist);
  const std::string source = dir_.path() + "/plugin-binary";
  writeAll(source, "#!/bin/sh\necho hi\n");
  options_.binary_source = source;
  ASSERT_TRUE(install(options_).ok());
  const std::string target = binDir() + "/nodemesh-cni";
  EXPECT_EQ(readAll(target), "#!/bin/sh\necho hi\n");
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  ASSERT_TRUE(uninstall(options_).ok());
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(CniInstallerTest, WatchReinsertsAfterARewriteAndUninstallsOnStop) {
  const std::string primary = confDir() + "/10-calico.conflist";
  writeAll(primary, kConflist);
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(stop.valid());
  Status result;
  std::thread watcher([&] { result = installAndWatch(options_, stop.get()); });
  auto wait_for = [&](auto pred) {
    for (int i = 0; i < 500 && !pred(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  };
  auto has_ours = [&] {
    json j = json::parse(readAll(primary), nullptr, false);
    return j.is_object() && countOurs(j) == 1;
  };
  EXPECT_TRUE(wait_for(has_ours));
  // The primary CNI rewrites its file (temp + rename, as most do).
  writeAll(confDir() + "/.tmp-calico", kConflist);
  fs::rename(confDir() + "/.tmp-calico", primary);
  EXPECT_TRUE(wait_for(has_ours)) << readAll(primary);
  const uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  watcher.join();
  EXPECT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(readAll(primary), kConflist);
}

TEST_F(CniInstallerTest, WatchWaitsForTheFirstConfig) {
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  Status result;
  std::thread watcher([&] { result = installAndWatch(options_, stop.get()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  writeAll(confDir() + "/10-bridge.conf", kConf);
  bool converted = false;
  for (int i = 0; i < 500 && !converted; ++i) {
    converted = fs::exists(confDir() + "/10-bridge.conflist");
    if (!converted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(converted);
  const uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  watcher.join();
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(readAll(confDir() + "/10-bridge.conf"), kConf);
}

TEST_F(CniInstallerTest, WatchWaitsOutABrokenPrimaryUntilItIsFixed) {
  const std::string primary = confDir() + "/10-calico.conflist";
  writeAll(primary, "{\"plugins\": [");
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  Status result;
  std::thread watcher([&] { result = installAndWatch(options_, stop.get()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(readAll(primary), "{\"plugins\": [");  // left alone
  writeAll(primary, kConflist);
  bool inserted = false;
  for (int i = 0; i < 500 && !inserted; ++i) {
    const json j = json::parse(readAll(primary), nullptr, false);
    inserted = j.is_object() && countOurs(j) == 1;
    if (!inserted) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(inserted);
  const uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  watcher.join();
  EXPECT_TRUE(result.ok());
  EXPECT_EQ(readAll(primary), kConflist);
}

}  // namespace
}  // namespace nodemesh::cni
