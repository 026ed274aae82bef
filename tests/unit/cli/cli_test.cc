#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "agent/admin/admin_api.h"
#include "agent/explain/explain.h"
#include "cli/completion.h"
#include "cli/doctor.h"
#include "cli/output.h"
#include "cli/views.h"
#include "config/local/local_config.h"
#include "tests/support/temp_dir.h"

namespace nodemesh::cli {
namespace {

using nlohmann::json;

size_t longestLine(const std::string& text) {
  size_t longest = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) longest = std::max(longest, displayWidth(line));
  return longest;
}

TEST(TableTest, FitsTheWidthByShrinkingTheWidestColumns) {
  Table t({"NAME", "IDENTITY", "DETAIL"});
  t.addRow({"short", "spiffe://cluster.local/ns/shop/sa/frontend", std::string(200, 'x')});
  t.addRow({"n", "id", "y"});
  std::string out = t.render(120);
  EXPECT_LE(longestLine(out), 120u) << out;
  EXPECT_NE(out.find("spiffe://cluster.local/ns/shop/sa/frontend"), std::string::npos) << out;
  EXPECT_NE(out.find("\xe2\x80\xa6"), std::string::npos);  // the cut cell ends with …
  // A narrow table is left alone, columns aligned.
  Table small({"A", "B"});
  small.addRow({"1", "22"});
  small.addRow({"333", ""});
  EXPECT_EQ(small.render(120), "A    B\n1    22\n333  -\n");
}

TEST(TableTest, ManyColumnsStillFit) {
  std::vector<std::string> headers;
  std::vector<std::string> row;
  for (int i = 0; i < 30; ++i) {
    headers.push_back("COLUMN-" + std::to_string(i));
    row.push_back("value-number-" + std::to_string(i));
  }
  Table t(headers);
  t.addRow(row);
  EXPECT_LE(longestLine(t.render(120)), 120u);
  EXPECT_LE(longestLine(t.render(80)), 80u);
}

TEST(OutputTest, Helpers) {
  EXPECT_EQ(truncate("abcdef", 4), "abc\xe2\x80\xa6");
  EXPECT_EQ(truncate("abc", 4), "abc");
  EXPECT_EQ(displayWidth("a\xe2\x80\xa6"), 2u);
  EXPECT_EQ(humanBytes(17), "17B");
  EXPECT_EQ(humanBytes(1536), "1.5KiB");
  EXPECT_EQ(humanBytes(64ull << 20), "64MiB");
  EXPECT_EQ(humanDuration(450), "450ms");
  EXPECT_EQ(humanDuration(200000), "3m20s");
  EXPECT_EQ(humanDuration(5 * 3600000 + 120000), "5h02m");
  EXPECT_EQ(shortIdentity("spiffe://cluster.local/ns/shop/sa/frontend"), "shop/frontend");
  EXPECT_EQ(shortIdentity(""), "-");
  EXPECT_EQ(toYaml(json{{"a", 1}, {"b", json::array({"x", "y"})}, {"c", nullptr}}),
            "a: 1\nb:\n  - x\n  - y\nc: ~\n");
}

// ---- views, fed with what the agent's admin API produces ----

class FakeState final : public agent::admin::AdminState {
 public:
  FakeState() {
    snapshot_ = config::loadLocalConfigFile(std::string(NODEMESH_EXAMPLES_DIR) + "/two-nodes.yaml")
                    .snapshot;
  }
  model::SnapshotPtr snapshot() const override { return snapshot_; }
  std::vector<agent::admin::PodView> pods() const override {
    return {{"shop/frontend-7d9f",
             "cluster1//v1/Pod/shop/frontend-7d9f",
             "/var/run/netns/nmt12345x0-p-frontend",
             4242,
             {"10.244.1.10"}}};
  }
  std::vector<tunnel::ConnectionInfo> connections() const override { return {}; }
  std::vector<agent::admin::CertificateView> certificates() const override {
    auto now = std::chrono::system_clock::now();
    return {{"spiffe://cluster.local/ns/shop/sa/frontend", "6F3A0A58EC18C98AEB12DB6CB999FF23", now,
             now + std::chrono::hours(24), "pem"}};
  }
  agent::admin::AgentInfo info() const override {
    agent::admin::AgentInfo i;
    i.node = "node1";
    return i;
  }
  void quit() override {}

 private:
  model::SnapshotPtr snapshot_;
};

TEST(ViewsTest, ConfigViewsFilterAndFit) {
  FakeState state;
  json dump = agent::admin::configDump(state);
  auto w = workloadsView(dump, {}, 120);
  EXPECT_EQ(w.data.size(), 4u);
  EXPECT_LE(longestLine(w.table), 120u) << w.table;
  EXPECT_NE(w.table.find("frontend-7d9f"), std::string::npos);
  EXPECT_NE(w.table.find("yes"), std::string::npos);  // frontend enrolled here
  EXPECT_EQ(workloadsView(dump, {"legacy", ""}, 120).data.size(), 1u);
  EXPECT_EQ(workloadsView(dump, {"", "node2"}, 120).data.size(), 2u);
  auto s = servicesView(dump, {}, 120);
  EXPECT_NE(s.table.find("80->8080"), std::string::npos) << s.table;
  EXPECT_NE(s.table.find("2/2 healthy"), std::string::npos) << s.table;
  auto p = policiesView(dump, {}, 200);
  EXPECT_NE(p.table.find("principals=cluster.local/ns/shop/sa/frontend & destinationPorts=8080"),
            std::string::npos)
      << p.table;
  auto c = certsView(dump, {}, std::chrono::system_clock::now(), 120);
  EXPECT_NE(c.table.find("23h59m"), std::string::npos) << c.table;
  EXPECT_EQ(certsView(dump, {"legacy", ""}, std::chrono::system_clock::now(), 120).data.size(), 0u);
}

TEST(ViewsTest, ConnectionsTableFits120Columns) {
  json list = {{"connections", json::array()}};
  for (int i = 0; i < 3; ++i) {
    list["connections"].push_back(
        {{"direction", "outbound"},
         {"pod", "a-namespace-with-a-long-name/a-pod-with-a-really-long-generated-name-7d9f5c"},
         {"src", "127.0.0.1:40290"},
         {"dst", "[fd00:1234:5678::20]:8080"},
         {"transport", "hbone"},
         {"src_identity", "spiffe://cluster.local/ns/a-namespace-with-a-long-name/sa/frontend"},
         {"dst_identity", "spiffe://cluster.local/ns/shop/sa/cart"},
         {"bytes_to_dst", 123456789},
         {"bytes_from_dst", 42},
         {"age_ms", 75000},
         {"state", "open"}});
  }
  auto v = connectionsView(list, {}, 120);
  EXPECT_EQ(v.data.size(), 3u);
  EXPECT_LE(longestLine(v.table), 120u) << v.table;
  EXPECT_NE(v.table.find("118MiB"), std::string::npos) << v.table;
  EXPECT_NE(v.table.find("1m15s"), std::string::npos) << v.table;
  EXPECT_EQ(connectionsView(list, {"shop", ""}, 120).data.size(), 0u);
}

TEST(ViewsTest, PodsWithAndWithoutTheAgent) {
  FakeState state;
  json dump = agent::admin::configDump(state);
  std::vector<PodCounters> pods = {{4242, {{"out_captured", 7}, {"in_steered", 2}}}};
  auto v = podsView(dump, pods, {}, 120);
  ASSERT_EQ(v.data.size(), 1u);
  EXPECT_EQ(v.data[0]["name"], "shop/frontend-7d9f");
  EXPECT_EQ(v.data[0]["counters"]["out_captured"], 7);
  EXPECT_LE(longestLine(v.table), 120u) << v.table;
  // The agent down: cookies and counters only.
  auto down = podsView(std::nullopt, pods, {}, 120);
  EXPECT_TRUE(down.data[0]["name"].is_null());
  EXPECT_NE(down.table.find("4242"), std::string::npos);
}

TEST(ViewsTest, ExplainTextIsNumberedWrappedAndFits) {
  FakeState state;
  agent::explain::AuthorizerChecker policies(state.snapshot());
  auto e = agent::explain::explainConnection(*state.snapshot(), agent::admin::captureView(state),
                                             policies, IpAddress::parse("10.244.1.10").value(),
                                             SocketAddress::parse("10.96.0.20:80").value());
  auto v = explainView(agent::explain::toJson(e), 120);
  EXPECT_LE(longestLine(v.table), 120u) << v.table;
  EXPECT_EQ(v.table.rfind(" 1. source 10.244.1.10 is shop/frontend-7d9f", 0), 0u) << v.table;
  EXPECT_NE(v.table.find("verdict: allow"), std::string::npos);
  EXPECT_NE(v.table.find("shop/cart-allow-frontend"), std::string::npos);
}

// ---- doctor ----

TEST(DoctorTest, ParsesKernelVersionsAndListeningSockets) {
  EXPECT_EQ(parseKernelVersion("6.18.44-fc-v595"), std::make_pair(6, 18));
  EXPECT_EQ(parseKernelVersion("5.15.0-91-generic"), std::make_pair(5, 15));
  EXPECT_EQ(parseKernelVersion("garbage"), std::nullopt);
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode\n"
      "   0: 0100007F:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        "
      "0 123456 1 0000000000000000 100 0 0 10 0\n"
      "   1: 0100007F:3A98 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        "
      "0 999 1 0000000000000000 100 0 0 10 0\n";
  EXPECT_EQ(listeningInode(tcp, 15000), 123456u);
  EXPECT_EQ(listeningInode(tcp, 15020), std::nullopt);
}

class FakeFs final : public FsProbe {
 public:
  std::set<std::string> existing;
  std::set<std::string> bpffs;
  bool exists(const std::string& p) const override { return existing.count(p) > 0; }
  bool isBpffs(const std::string& p) const override { return bpffs.count(p) > 0; }
  std::string fsName(const std::string& p) const override {
    return bpffs.count(p) ? "bpf" : "ext4";
  }
};

TEST(DoctorTest, BpffsCheck) {
  FakeFs fs;
  fs.existing = {"/", "/sys", "/sys/fs", "/sys/fs/bpf", "/sys/fs/bpf/nodemesh", "/tmp"};
  fs.bpffs = {"/sys/fs/bpf", "/sys/fs/bpf/nodemesh"};
  EXPECT_EQ(checkBpffsDir("/sys/fs/bpf/nodemesh", fs).status, CheckStatus::kOk);
  EXPECT_EQ(checkBpffsDir("/sys/fs/bpf/other/x", fs).status, CheckStatus::kOk);
  auto missing = checkBpffsDir("/tmp/no-bpffs/nodemesh", fs);
  EXPECT_EQ(missing.status, CheckStatus::kFail);
  EXPECT_NE(missing.detail.find("no bpffs for /tmp/no-bpffs/nodemesh"), std::string::npos);
  EXPECT_NE(missing.detail.find("/tmp, is on ext4"), std::string::npos) << missing.detail;
  EXPECT_EQ(checkBpffsDir("/tmp", fs).status, CheckStatus::kFail);
  // /sys/fs/bpf not mounted: the agent mounts it, but pins would not outlive a reboot plan.
  fs.bpffs.clear();
  fs.existing.erase("/sys/fs/bpf/nodemesh");
  EXPECT_EQ(checkBpffsDir("/sys/fs/bpf/nodemesh", fs).status, CheckStatus::kWarn);
}

TEST(DoctorTest, ViewShowsFailuresInFull) {
  std::vector<Check> checks = {{"kernel", CheckStatus::kOk, "6.18"},
                               {"bpffs", CheckStatus::kFail, std::string(300, 'z') + " END"}};
  auto v = doctorView(checks, 120);
  EXPECT_NE(v.table.find("FAIL bpffs: " + std::string(300, 'z') + " END"), std::string::npos);
  EXPECT_EQ(v.data[1]["status"], "FAIL");
}

// ---- completion ----

TEST(CompletionTest, BashCompletesSubcommandsFlagsAndValues) {
  CLI::App app{"test", "nodemeshctl"};
  std::string output;
  std::string level;
  app.add_option("-o,--output", output);
  app.add_subcommand("workloads", "w");
  app.add_subcommand("explain", "e")->add_flag("--verbose");
  app.add_subcommand("log-level", "l")->add_option("LEVEL", level);
  std::string script = bashCompletion(app);
  const nodemesh::testing::TempDir dir;  // removed with the script
  const std::string path = dir.path() + "/nodemeshctl.bash";
  std::ofstream(path) << script;
  auto complete = [&](const std::string& words, int cword) {
    std::string cmd = "bash -c 'source " + path + "; COMP_WORDS=(" + words +
                      "); COMP_CWORD=" + std::to_string(cword) +
                      "; _nodemeshctl; echo \"${COMPREPLY[*]}\"'";
    std::string out;
    // The test drives bash itself: the completion script is bash.
    FILE* p = ::popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c)
    if (!p) return out;
    char buf[512];
    while (std::fgets(buf, sizeof(buf), p)) out += buf;
    ::pclose(p);
    return out;
  };
  EXPECT_EQ(complete("nodemeshctl ex", 1), "explain\n");
  EXPECT_EQ(complete("nodemeshctl lo", 1), "log-level\n");
  EXPECT_EQ(complete("nodemeshctl -o j", 2), "json\n");
  EXPECT_EQ(complete("nodemeshctl explain --verb", 2), "--verbose\n");
  EXPECT_EQ(complete("nodemeshctl log-level de", 2), "debug\n");
  EXPECT_EQ(complete("nodemeshctl -o json wor", 3), "workloads\n");
}

}  // namespace
}  // namespace nodemesh::cli
