#pragma once

// Shared by the HBONE tunnel e2e tests: the pods' addresses, a tcpdump capture of a node's
// link, and the fixture with its seeded transfers (plain and captured).

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tests/e2e/mesh_fixture.h"

namespace nodemesh::sim::hbone_tunnel_test {

inline constexpr const char* kFrontend = "10.244.1.10";
inline constexpr const char* kCartV2 = "10.244.1.21";
inline constexpr const char* kCartV1 = "10.244.2.20";
inline constexpr const char* kBatch = "10.244.2.30";
inline constexpr uint16_t kHbonePort = 15008;

using Stats = std::map<std::string, uint64_t>;

// ---- packet capture -------------------------------------------------------------------------

// tcpdump on an interface of a netns, writing a pcap file until stop().
class LinkCapture {
 public:
  LinkCapture(SimCluster& cluster, const std::string& netns_path, const std::string& name)
      : path_(cluster.workDir() + "/" + name + ".pcap") {
    ProcessSpec spec;
    spec.netns_path = netns_path;
    // --immediate-mode and -U: every packet is read and written as it arrives (otherwise the
    // last ones can still sit in the capture ring when tcpdump is stopped); -Z root: no
    // privilege drop, so the file in the work directory stays writable; -B: a large kernel
    // buffer, so nothing is dropped (a dropped packet could hide plaintext): in immediate mode
    // libpcap uses fixed-size frames as large as a GRO packet (64 KiB), so 16 MiB held only
    // ~256 of them and a busy machine dropped packets; 128 MiB holds the whole 4 MiB transfer
    // each way; -s 0: whole packets.
    spec.argv = {"tcpdump", "-i", "eth0", "-n", "--immediate-mode",
                 "-U",      "-Z", "root", "-B", "131072",
                 "-s",      "0",  "-w",   path_};
    spec.stdout_path = cluster.workDir() + "/" + name + ".tcpdump.log";
    spec.stderr_path = spec.stdout_path;
    process_ = &cluster.startProcess(spec);
  }

  bool waitReady() { return process_->waitForOutput("listening on eth0", seconds(10)); }

  // SIGINT makes tcpdump flush and print its summary; returns that output.
  std::string stop() {
    std::this_thread::sleep_for(milliseconds(200));  // the last ACKs and FINs
    process_->signal(SIGINT);
    process_->waitExit(seconds(10));
    return process_->output();
  }

  // From the summary: every packet the filter saw was written, and the kernel dropped none.
  static bool complete(const std::string& summary) {
    std::smatch captured;
    std::smatch received;
    return std::regex_search(summary, captured, std::regex(R"((\d+) packets captured)")) &&
           std::regex_search(summary, received,
                             std::regex(R"((\d+) packets received by filter)")) &&
           captured[1] == received[1] &&
           std::regex_search(summary, std::regex(R"((^|\n)0 packets dropped by kernel)"));
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  Process* process_ = nullptr;
};

class HboneTunnelTest : public MeshTest {
 protected:
  // nm-testapp serve that handles up to `parallel` connections at once.
  Process& serveParallel(const std::string& pod, uint16_t port, int count, int parallel) {
    Process& p = cluster_->startInPod(
        pod, {testappPath(), "serve", "--port", std::to_string(port), "--count",
              std::to_string(count), "--parallel", std::to_string(parallel)});
    EXPECT_TRUE(waitForListening(p).has_value()) << p.output();
    return p;
  }

  // One nm-testapp connect with an explicit seed; the "done" event.
  nlohmann::json connectSeeded(const std::string& pod, const std::string& to, uint64_t bytes,
                               uint32_t seed) {
    auto r =
        cluster_->runInPod(pod,
                           {testappPath(), "connect", "--to", to, "--send", std::to_string(bytes),
                            "--expect", std::to_string(bytes), "--seed", std::to_string(seed)},
                           seconds(60));
    auto done = findEvent(r.out, "done");
    EXPECT_TRUE(done.has_value()) << r.describe() << "\n" << r.out;
    return done.value_or(nlohmann::json::object());
  }

  // Tallies of back-to-back `nm-testapp connect-many` batches of 1 KiB echoes.
  struct ShortConnections {
    uint64_t total = 0;
    uint64_t failed = 0;
    std::vector<std::string> errors;  // every batch that failed, or printed no summary
  };

  // One batch of `count` 1 KiB echo connections from `pod` to `to`, `concurrency` at a time,
  // added to `tally`. False when the batch printed no summary (its output is in the errors).
  // Safe to call from a thread of the test's own.
  // `timeout_ms` (0: connect-many's default): how long one connection may take.
  bool shortConnectionBatch(const std::string& pod, const std::string& to, int count,
                            int concurrency, ShortConnections& tally, int timeout_ms = 0) {
    std::vector<std::string> argv = {testappPath(),   "connect-many",
                                     "--to",          to,
                                     "--count",       std::to_string(count),
                                     "--send",        "1024",
                                     "--expect",      "1024",
                                     "--concurrency", std::to_string(concurrency)};
    if (timeout_ms > 0) {
      argv.emplace_back("--timeout-ms");
      argv.emplace_back(std::to_string(timeout_ms));
    }
    auto r = cluster_->runInPod(pod, argv, seconds(60));
    auto many = findEvent(r.out, "many");
    if (!many) {
      tally.errors.push_back(r.describe() + r.out);
      return false;
    }
    tally.total += many->value("count", uint64_t{0});
    tally.failed += many->value("failed", uint64_t{0});
    if (!many->value("ok", false)) tally.errors.push_back(many->dump());
    return true;
  }

  // A seeded `bytes`-each-way transfer from frontend (node1) to cart-v1 (node2) over HBONE,
  // checked intact at both ends.
  void transferToCartV1(uint64_t bytes, uint32_t seed) {
    Process& server = serveParallel("cart-v1", 8080, 1, 1);
    auto done = connectSeeded("frontend", std::string(kCartV1) + ":8080", bytes, seed);
    EXPECT_TRUE(done.value("ok", false)) << done.dump();
    EXPECT_EQ(server.waitExit(seconds(10)), 0) << server.output();
  }

  struct CapturedTransfer {
    std::string pcap_path;
    std::string summary;  // tcpdump's, of the last attempt
    bool complete = false;
  };

  // A seeded `bytes`-each-way transfer from frontend to `server_pod`:`port` (reached at
  // `to`), captured on node1's eth0. Under load tcpdump can drop packets from its ring, and a
  // capture with a gap proves nothing either way, so an incomplete one is repeated (up to
  // three transfers) rather than searched.
  CapturedTransfer captureTransfer(const std::string& name, const std::string& server_pod,
                                   uint16_t port, const std::string& to, uint64_t bytes,
                                   uint32_t seed) {
    CapturedTransfer result;
    for (int attempt = 1; attempt <= 3 && !result.complete; ++attempt) {
      Process& server = serveParallel(server_pod, port, 1, 1);
      LinkCapture capture(*cluster_, cluster_->nodeNetnsPath("node1"),
                          name + std::to_string(attempt));
      EXPECT_TRUE(capture.waitReady()) << capture.stop();
      auto done = connectSeeded("frontend", to, bytes, seed);
      EXPECT_TRUE(done.value("ok", false)) << done.dump();
      EXPECT_TRUE(server.waitExit(seconds(10)).has_value());
      result.summary = capture.stop();
      result.pcap_path = capture.path();
      result.complete = LinkCapture::complete(result.summary);
      if (!result.complete)
        std::printf("capture %d incomplete:\n%s\n", attempt, result.summary.c_str());
    }
    return result;
  }
};

}  // namespace nodemesh::sim::hbone_tunnel_test
