// End-to-end tests of the HBONE server (port 15008) as an attacker and as an independent
// implementation see it, on the two-node cluster of tests/e2e/mesh_fixture.h:
//  - identity (issue "tunnel", must show 3): no client certificate, a certificate from another
//    CA, and a server presenting the wrong SPIFFE identity are all refused;
//  - malformed input (must show 8): TLS garbage, HTTP/2 frames out of order, a non-CONNECT
//    request, an oversized header block and a stalled handshake neither crash nor wedge the
//    agent, which keeps serving;
//  - interop (must show 9): python-h2 over Python's ssl (Debian's python3-h2, nothing of
//    nodemesh) opens a CONNECT stream and exchanges bytes with the application.
// The raw clients are tests/e2e/scripts/hbone_client.py, run in a pod that is not enrolled
// (outsider), so that no agent captures their connections.
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <atomic>
#include <functional>
#include <thread>

#include "hbone/h2_errors.h"
#include "identity/clock.h"
#include "identity/local_ca.h"
#include "identity/spiffe_id.h"
#include "identity/workload_certificate.h"
#include "tests/e2e/mesh_fixture.h"
#include "tunnel/rate_limited_log.h"

namespace nodemesh::sim {
namespace {

using tunnel::RateLimitedLog;

// Debian's interpreter: `python3` on PATH may be another one, without python3-h2.
constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kCartV1Hbone = "10.244.2.20:15008";
constexpr const char* kCartV1App = "10.244.2.20:8080";
constexpr const char* kOutsiderIp = "10.244.1.40";
constexpr const char* kFrontendId = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr const char* kCartId = "spiffe://cluster.local/ns/shop/sa/cart";

std::string clientScript() {
  return (fs::path(NODEMESH_EXAMPLES_DIR).parent_path() / "tests/e2e/scripts/hbone_client.py")
      .string();
}

// A string field of the script's result; "" when absent or null.
std::string field(const nlohmann::json& j, const std::string& key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// A number field of the script's result; `fallback` when absent or null.
int64_t number(const nlohmann::json& j, const std::string& key, int64_t fallback = -1) {
  return j.contains(key) && j[key].is_number() ? j[key].get<int64_t>() : fallback;
}

// The server ended the connection (EOF, reset, TLS alert), as opposed to the client giving up
// waiting or the connection still being usable.
bool closedByServer(const nlohmann::json& result) {
  const std::string closed = field(result, "closed");
  return !closed.empty() && closed != "timeout";
}

struct ClientCredentials {
  std::string ca;  // the trust root the client checks the server against
  std::string cert;
  std::string key;
};

class HboneSecurityTest : public MeshTest {
 protected:
  std::string caDir() { return cluster_->workDir() + "/ca"; }

  // A client certificate for `id` issued by the CA kept in `state_dir` (created there when
  // missing), written with its key into the work directory as <name>-cert.pem/-key.pem.
  ClientCredentials issueClientCert(const std::string& state_dir, const std::string& id,
                                    const std::string& name) {
    auto ca = identity::LocalCa::loadOrCreate(state_dir, "cluster.local", clock_);
    if (!ca) throw HarnessError("CA in " + state_dir + ": " + ca.error().message);
    auto spiffe = identity::SpiffeId::parse(id);
    if (!spiffe) throw HarnessError(id + ": " + spiffe.error().message);
    auto cert = (*ca)->issue(*spiffe, std::chrono::hours(1));
    if (!cert) throw HarnessError("issue " + id + ": " + cert.error().message);

    identity::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), (*cert)->privateKey(), nullptr, nullptr, 0,
                                         nullptr, nullptr) != 1) {
      throw HarnessError("PEM_write_bio_PrivateKey failed");
    }
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    ClientCredentials out;
    out.key = cluster_->writeFile(name + "-key.pem", std::string(data, static_cast<size_t>(len)));
    ::chmod(out.key.c_str(), 0600);
    out.cert = cluster_->writeFile(name + "-cert.pem", (*cert)->pemCertificate());
    // The client always checks the server against the cluster's root, whichever CA issued its
    // own certificate.
    out.ca = caDir() + "/" + identity::LocalCa::kCertFile;
    return out;
  }

  // Credentials the agents accept: frontend's identity from the cluster's CA.
  ClientCredentials meshClient() { return issueClientCert(caDir(), kFrontendId, "frontend"); }

  static std::vector<std::string> credentialArgs(const ClientCredentials& c) {
    return {"--ca", c.ca, "--cert", c.cert, "--key", c.key};
  }

  // Runs hbone_client.py `mode` in `pod` against cart-v1's 15008; returns its result line.
  nlohmann::json hboneClient(const std::string& mode, std::vector<std::string> args,
                             const std::string& pod = "outsider",
                             milliseconds timeout = seconds(30)) {
    std::vector<std::string> argv = {kPython, clientScript(), mode, "--to", kCartV1Hbone};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = cluster_->runInPod(pod, argv, timeout);
    auto result = findEvent(r.out, "result");
    EXPECT_TRUE(result.has_value()) << r.describe() << "\n" << r.out << r.err;
    return result.value_or(nlohmann::json::object());
  }

  // A mesh connection frontend -> cart-v1:8080 still works, end to end.
  void expectCartV1StillServes(const std::string& after) {
    ASSERT_TRUE(agent2_->isRunning()) << "agent2 died after " << after << ":\n"
                                      << agent2_->output();
    Process& server = serve("cart-v1", 8080);
    auto done = connect("frontend", kCartV1App, 64 << 10, 64 << 10);
    EXPECT_TRUE(done.value("ok", false)) << "after " << after << ": " << done.dump();
    ASSERT_TRUE(server.waitExit(seconds(10)).has_value()) << server.output();
    auto conn = findEvent(server.output(), "conn");
    ASSERT_TRUE(conn.has_value()) << server.output();
    EXPECT_TRUE(conn->value("received_ok", false)) << conn->dump();
  }

  // The resident set of a process, in KiB; -1 when it is gone.
  static long rssKb(Process& p) {
    std::ifstream in("/proc/" + std::to_string(p.pid()) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1L;
  }

  // The largest resident set of `p` (KiB), sampled every 20 ms while `busy` runs.
  static long peakRssKbWhile(Process& p, const std::function<void()>& busy) {
    std::atomic<bool> done{false};
    std::atomic<long> peak{rssKb(p)};
    std::thread sampler([&] {
      while (!done) {
        peak = std::max(peak.load(), rssKb(p));
        std::this_thread::sleep_for(milliseconds(20));
      }
    });
    busy();
    done = true;
    sampler.join();
    return peak;
  }

  identity::SystemClock clock_;
};

// ---- identity ----

// Must show 3 (a): a client without a certificate completes its side of the TLS 1.3 handshake
// but gets no HTTP/2 byte: the server closes on the first read, logs and counts the failure,
// and keeps serving. The same probe with a mesh certificate is answered with SETTINGS.
TEST_F(HboneSecurityTest, ClientWithoutCertificateIsRefused) {
  startAgents();
  const ClientCredentials mesh = meshClient();
  auto before = tunnelStats(*agent2_);
  ASSERT_FALSE(before.empty()) << agent2_->output();

  auto r = hboneClient("probe", {"--ca", mesh.ca});
  EXPECT_EQ(number(r, "received"), 0) << r.dump();
  EXPECT_TRUE(closedByServer(r)) << r.dump();
  EXPECT_FALSE(r.value("h2_settings", false)) << r.dump();
  const std::string kFailure = std::string("HBONE connection with ") + kOutsiderIp;
  ASSERT_TRUE(agent2_->waitForOutput(kFailure, seconds(5))) << agent2_->output();
  EXPECT_TRUE(std::regex_search(agent2_->output(),
                                std::regex(R"(HBONE connection with 10\.244\.1\.40:\d+ failed: )"
                                           R"(TLS handshake failed: .*certificate)")))
      << agent2_->output();
  auto after = tunnelStats(*agent2_);
  EXPECT_EQ(after["tls_handshake_failures"], before["tls_handshake_failures"] + 1);
  EXPECT_EQ(after["tls_handshakes_server"], before["tls_handshakes_server"]);

  // Control: the very same probe with a certificate from the cluster's CA gets HTTP/2.
  auto ok = hboneClient("probe", credentialArgs(mesh));
  EXPECT_EQ(field(ok, "handshake"), "ok") << ok.dump();
  EXPECT_TRUE(ok.value("h2_settings", false)) << ok.dump();
  EXPECT_EQ(field(ok, "server_identity"), kCartId) << ok.dump();
  EXPECT_EQ(tunnelStats(*agent2_)["tls_handshakes_server"], before["tls_handshakes_server"] + 1);

  expectCartV1StillServes("a client without certificate");
}

// Must show 3 (b): a certificate with a well-formed SPIFFE identity (frontend's, even) but
// issued by another CA is refused the same way.
TEST_F(HboneSecurityTest, ClientCertificateFromAnotherCaIsRefused) {
  startAgents();
  const ClientCredentials rogue =
      issueClientCert(cluster_->workDir() + "/rogue-ca", kFrontendId, "rogue-frontend");
  auto before = tunnelStats(*agent2_);
  ASSERT_FALSE(before.empty()) << agent2_->output();

  auto r = hboneClient("probe", credentialArgs(rogue));
  EXPECT_EQ(number(r, "received"), 0) << r.dump();
  EXPECT_TRUE(closedByServer(r)) << r.dump();
  EXPECT_FALSE(r.value("h2_settings", false)) << r.dump();
  ASSERT_TRUE(
      agent2_->waitForOutput(std::string("HBONE connection with ") + kOutsiderIp, seconds(5)))
      << agent2_->output();
  EXPECT_TRUE(std::regex_search(agent2_->output(),
                                std::regex(R"(HBONE connection with 10\.244\.1\.40:\d+ failed: )"
                                           R"(TLS handshake failed: .*certificate)")))
      << agent2_->output();
  auto after = tunnelStats(*agent2_);
  EXPECT_EQ(after["tls_handshake_failures"], before["tls_handshake_failures"] + 1);
  EXPECT_EQ(after["tls_handshakes_server"], before["tls_handshakes_server"]);
  EXPECT_EQ(after["hbone_streams_accepted"], before["hbone_streams_accepted"]);

  expectCartV1StillServes("a client certificate from another CA");
}

// Must show 3 (c): agent2 believes cart-v1 runs as `impostor` and presents that identity;
// agent1 expects .../sa/cart (its config is unchanged), so it refuses the server: the
// application's connection fails, the server application receives nothing, agent1 logs both
// identities and counts a handshake failure.
TEST_F(HboneSecurityTest, ServerWithWrongIdentityIsRefusedByTheClient) {
  std::string config = testConfig();
  const std::string kCartV1Entry = "- uid: cluster1//v1/Pod/shop/cart-v1-5c2a\n";
  const size_t entry = config.find(kCartV1Entry);
  ASSERT_NE(entry, std::string::npos);
  const size_t sa = config.find("serviceAccount: cart\n", entry);
  ASSERT_NE(sa, std::string::npos);
  config.replace(sa, std::string("serviceAccount: cart").size(), "serviceAccount: impostor");
  const std::string impostor_config = cluster_->writeFile("mesh-impostor.yaml", config);

  agent1_ = &startAgent("node1");
  agent2_ = &startAgent("node2", {}, impostor_config);
  ASSERT_TRUE(agent1_->waitForOutput("enrolled pod shop/frontend-7d9f", seconds(10)))
      << agent1_->output();
  ASSERT_TRUE(agent2_->waitForOutput("enrolled pod shop/cart-v1-5c2a", seconds(10)))
      << agent2_->output();

  // What agent2 now presents on 15008, seen by an independent client.
  auto probe = hboneClient("probe", credentialArgs(meshClient()));
  EXPECT_EQ(field(probe, "server_identity"), "spiffe://cluster.local/ns/shop/sa/impostor")
      << probe.dump();

  auto before = tunnelStats(*agent1_);
  ASSERT_FALSE(before.empty()) << agent1_->output();
  Process& server = serve("cart-v1", 8080);
  auto done = connect("frontend", kCartV1App, 4096, 4096);
  EXPECT_FALSE(done.value("ok", true)) << done.dump();
  EXPECT_EQ(done.value("received", uint64_t{1}), 0u) << done.dump();

  const std::string kMismatch =
      "server identity spiffe://cluster.local/ns/shop/sa/impostor is not the expected "
      "spiffe://cluster.local/ns/shop/sa/cart";
  ASSERT_TRUE(agent1_->waitForOutput(kMismatch, seconds(5))) << agent1_->output();
  EXPECT_TRUE(std::regex_search(
      agent1_->output(), std::regex(R"(HBONE connection with 10\.244\.2\.20:15008 failed: .*)" +
                                    std::string("server identity"))))
      << agent1_->output();
  auto after = tunnelStats(*agent1_);
  EXPECT_GT(after["tls_handshake_failures"], before["tls_handshake_failures"]);
  EXPECT_EQ(after["tls_handshakes_client"], before["tls_handshakes_client"]);
  EXPECT_EQ(after["hbone_streams_accepted"], before["hbone_streams_accepted"]);
  // The access log records the failure, with the identity that was expected (the log reaches
  // stdout within its flush interval).
  const std::regex failed_line(
      R"(direction=outbound pod=shop/frontend-7d9f .*dst=10\.244\.2\.20:8080 .*)"
      R"(result=(?!ok ).*dst_identity=spiffe://cluster\.local/ns/shop/sa/cart)");
  EXPECT_TRUE(
      waitFor([&] { return std::regex_search(agent1_->output(), failed_line); }, seconds(5)))
      << agent1_->output();

  // Nothing reached the application: no connection was accepted (no fallback to plain TCP).
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(server.isRunning()) << server.output();
  EXPECT_FALSE(findEvent(server.output(), "conn").has_value()) << server.output();
  EXPECT_EQ(agent2_->output().find("direction=inbound"), std::string::npos) << agent2_->output();
}

// ---- malformed input ----

// Must show 8 (1): random bytes, and a TLS record whose ClientHello is noise, are answered by a
// prompt close (not by the handshake timeout); the agent survives and serves.
TEST_F(HboneSecurityTest, TlsGarbageIsClosedWithoutHarm) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  for (const std::vector<std::string>& variant :
       {std::vector<std::string>{"--bytes", "4096", "--seed", "1"},
        std::vector<std::string>{"--bytes", "512", "--seed", "2", "--tls-record"},
        std::vector<std::string>{"--bytes", "65536", "--seed", "3"}}) {
    auto r = hboneClient("garbage", variant);
    EXPECT_TRUE(closedByServer(r)) << r.dump();
    // At most one TLS alert record (5-byte header + 2-byte alert) comes back.
    EXPECT_LE(number(r, "received"), 7) << r.dump();
    EXPECT_LT(r.value("seconds", 100.0), 5.0) << "not closed promptly: " << r.dump();
  }
  ASSERT_TRUE(agent2_->isRunning()) << agent2_->output();
  EXPECT_EQ(tunnelStats(*agent2_)["tls_handshake_failures"], before["tls_handshake_failures"] + 3);
  expectCartV1StillServes("TLS garbage");
}

// Must show 8 (2): an authenticated client that breaks HTTP/2 framing (a DATA frame on an
// idle stream; no client preface at all) loses the connection (GOAWAY or reset), and no
// stream reaches the application.
TEST_F(HboneSecurityTest, Http2FramesOutOfOrderEndTheConnection) {
  startAgents();
  const ClientCredentials mesh = meshClient();
  auto before = tunnelStats(*agent2_);

  auto args = credentialArgs(mesh);
  auto data_first = hboneClient("data-first", args);
  EXPECT_EQ(field(data_first, "handshake"), "ok") << data_first.dump();
  EXPECT_EQ(number(data_first, "status"), -1) << "a response: " << data_first.dump();
  // Closed by the server, after a GOAWAY(PROTOCOL_ERROR) (FatalErrorsAreAnnouncedBeforeTheClose
  // checks that it arrives).
  EXPECT_TRUE(closedByServer(data_first)) << "connection left open: " << data_first.dump();

  args.insert(args.end(), {"--authority", kCartV1App});
  auto no_preface = hboneClient("no-preface", args);
  EXPECT_EQ(field(no_preface, "handshake"), "ok") << no_preface.dump();
  EXPECT_TRUE(closedByServer(no_preface)) << no_preface.dump();

  auto after = tunnelStats(*agent2_);
  EXPECT_EQ(after["tls_handshakes_server"], before["tls_handshakes_server"] + 2);
  EXPECT_EQ(after["hbone_streams_accepted"], before["hbone_streams_accepted"]);
  // Both logged as failures of the connection with the client, with the HTTP/2 reason.
  const std::string kFailure = std::string("HBONE connection with ") + kOutsiderIp;
  EXPECT_TRUE(waitFor([&] { return countOf(agent2_->output(), kFailure) == 2; }, seconds(5)))
      << agent2_->output();
  EXPECT_EQ(countOf(agent2_->output(), "failed: HTTP/2"), 2u) << agent2_->output();
  expectCartV1StillServes("HTTP/2 frames out of order");
}

// Must show 8 (3): HBONE carries only classic CONNECT; a GET is answered 400 and never
// delivered.
TEST_F(HboneSecurityTest, NonConnectRequestIsAnswered400) {
  startAgents();
  auto args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", kCartV1App});
  auto r = hboneClient("get", args);
  EXPECT_EQ(field(r, "handshake"), "ok") << r.dump();
  EXPECT_EQ(number(r, "status"), 400) << r.dump();
  EXPECT_EQ(agent2_->output().find("direction=inbound"), std::string::npos) << agent2_->output();
  expectCartV1StillServes("a GET request");
}

// Must show 8 (4): a CONNECT whose header block holds a 32 KiB value (over the 16 KiB
// SETTINGS_MAX_HEADER_LIST_SIZE the server announced) is answered 431 or reset, never
// delivered.
TEST_F(HboneSecurityTest, HugeHeaderBlockIsRefused) {
  startAgents();
  auto args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", kCartV1App, "--header-bytes", "32768"});
  auto r = hboneClient("huge-header", args);
  EXPECT_EQ(field(r, "handshake"), "ok") << r.dump();
  // Answered, not just closed: a crash of the connection would close it too.
  EXPECT_EQ(number(r, "status", 0), 431) << r.dump();
  EXPECT_EQ(agent2_->output().find("direction=inbound"), std::string::npos) << agent2_->output();
  expectCartV1StillServes("a 32 KiB header");
}

// Must show 8 (5): a client that sends half a ClientHello and stops is closed by the agent
// after the handshake timeout (10 s), and other connections are served meanwhile.
TEST_F(HboneSecurityTest, StalledHandshakeIsClosedAfterTheTimeout) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  Process& stall = cluster_->startInPod(
      "outsider", {kPython, clientScript(), "stall", "--to", kCartV1Hbone, "--timeout", "25"});
  ASSERT_TRUE(stall.waitForOutput("\"stalled\"", seconds(10))) << stall.output();
  const auto stalled_at = std::chrono::steady_clock::now();

  // During the stall: a mesh connection through the same 15008, and an independent client.
  expectCartV1StillServes("a stalled handshake began");
  auto probe = hboneClient("probe", credentialArgs(meshClient()));
  EXPECT_TRUE(probe.value("h2_settings", false)) << probe.dump();
  EXPECT_TRUE(stall.isRunning()) << "the stall ended before the others were served:\n"
                                 << stall.output();
  EXPECT_LT(std::chrono::steady_clock::now() - stalled_at, seconds(8));

  ASSERT_TRUE(stall.waitExit(seconds(30)).has_value()) << stall.output();
  auto r = findEvent(stall.output(), "result");
  ASSERT_TRUE(r.has_value()) << stall.output();
  EXPECT_TRUE(closedByServer(*r)) << r->dump();
  EXPECT_EQ(number(*r, "received"), 0) << r->dump();
  const double secs = r->value("seconds", 0.0);
  EXPECT_GE(secs, 9.0) << "closed before the handshake timeout: " << r->dump();
  EXPECT_LE(secs, 15.0) << r->dump();
  EXPECT_TRUE(agent2_->waitForOutput("TLS handshake timed out", seconds(2))) << agent2_->output();
  EXPECT_EQ(tunnelStats(*agent2_)["tls_handshake_failures"], before["tls_handshake_failures"] + 1);
  expectCartV1StillServes("a stalled handshake was closed");
}

// Floods (reliability issue): an authenticated peer that opens no stream cannot keep the
// connection (a file descriptor of the agent's) forever: after the server idle timeout (here
// 2 s) it gets a GOAWAY, the connection is closed and counted, and the agent keeps serving.
TEST_F(HboneSecurityTest, IdleAuthenticatedConnectionIsClosedAfterTheServerIdleTimeout) {
  startAgents({"--hbone-server-idle-timeout-s", "2"});
  auto before = tunnelStats(*agent2_);
  std::vector<std::string> args = credentialArgs(meshClient());
  args.insert(args.end(), {"--timeout", "20"});
  auto r = hboneClient("idle", args);
  EXPECT_EQ(field(r, "handshake"), "ok") << r.dump();
  EXPECT_TRUE(r.value("goaway", false)) << r.dump();
  EXPECT_EQ(number(r, "goaway_error"), 0) << r.dump();  // NO_ERROR
  EXPECT_TRUE(closedByServer(r)) << r.dump();
  const double secs = r.value("seconds", 0.0);
  EXPECT_GE(secs, 1.9) << r.dump();
  EXPECT_LE(secs, 6.0) << r.dump();  // the check runs once a second
  EXPECT_TRUE(waitFor(
      [&] {
        return tunnelStats(*agent2_)["hbone_server_idle_closed"] ==
               before["hbone_server_idle_closed"] + 1;
      },
      seconds(5)))
      << agent2_->output();
  expectCartV1StillServes("an idle connection was closed");
}

// Floods (reliability issue): 500 CONNECTs a peer sends to an address that is not the pod's are
// each answered 400 and counted, but the agent logs at most 10 such lines per 10 s per worker
// (the next line says how many it held back) and keeps serving.
TEST_F(HboneSecurityTest, RefusedStreamFloodIsCountedButNotLoggedLineByLine) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  const size_t lines_before = countOf(agent2_->output(), "refused with 400");
  std::vector<std::string> args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", "10.244.2.99:8080", "--count", "500"});
  auto r = hboneClient("refused-flood", args);
  EXPECT_EQ(number(r, "sent"), 500) << r.dump();
  ASSERT_TRUE(r.contains("statuses")) << r.dump();
  EXPECT_EQ(r["statuses"].value("400", 0), 500) << r.dump();
  EXPECT_TRUE(waitFor(
      [&] {
        return tunnelStats(*agent2_)["hbone_streams_rejected"] ==
               before["hbone_streams_rejected"] + 500;
      },
      seconds(5)))
      << agent2_->output();
  const size_t lines = countOf(agent2_->output(), "refused with 400") - lines_before;
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, 2u * RateLimitedLog::kDefaultBurst) << agent2_->output();  // a worker each
  expectCartV1StillServes("a flood of refused streams");
}

// Floods (reliability issue): connections that start a TLS handshake and stall are bounded by
// --max-pending-handshakes (here 4 over the agent's workers): each one beyond it closes the
// oldest pending one at once (counted), a quick handshake still gets through, and the ones left
// end at the handshake timeout.
TEST_F(HboneSecurityTest, StalledHandshakesBeyondTheBoundShedTheOldest) {
  startAgents({"--max-pending-handshakes", "4"});
  auto before = tunnelStats(*agent2_);
  constexpr int kStalls = 10;
  std::vector<Process*> stalls;
  for (int i = 0; i < kStalls; ++i) {
    stalls.push_back(&cluster_->startInPod(
        "outsider", {kPython, clientScript(), "stall", "--to", kCartV1Hbone, "--timeout", "25"}));
    ASSERT_TRUE(stalls.back()->waitForOutput("\"stalled\"", seconds(10)))
        << stalls.back()->output();
  }
  auto probe = hboneClient("probe", credentialArgs(meshClient()));
  EXPECT_TRUE(probe.value("h2_settings", false)) << probe.dump();
  int shed = 0;
  int timed_out = 0;
  for (Process* p : stalls) {
    ASSERT_TRUE(p->waitExit(seconds(30)).has_value()) << p->output();
    auto r = findEvent(p->output(), "result");
    ASSERT_TRUE(r.has_value()) << p->output();
    EXPECT_TRUE(closedByServer(*r)) << r->dump();
    const double secs = r->value("seconds", 0.0);
    if (secs < 8.0) ++shed;
    if (secs >= 9.0) ++timed_out;
  }
  std::cout << "pending handshakes e2e: " << shed << " of " << kStalls
            << " stalled handshakes shed at once, " << timed_out << " ended at the timeout\n";
  EXPECT_GE(shed, kStalls - 4);
  EXPECT_EQ(shed + timed_out, kStalls);
  EXPECT_TRUE(waitFor(
      [&] {
        return tunnelStats(*agent2_)["hbone_handshakes_shed"] ==
               before["hbone_handshakes_shed"] + static_cast<uint64_t>(shed);
      },
      seconds(5)))
      << agent2_->output();
  EXPECT_TRUE(agent2_->waitForOutput("is closed to make room", seconds(2))) << agent2_->output();
  expectCartV1StillServes("stalled handshakes were shed");
}

// The figures for docs/tunnel.md: agent2's RSS before and while 2,000 connections stall in their
// TLS handshake, with the default bound, a small one and (practically) none. Not an assertion
// (CI machines differ); run with --gtest_also_run_disabled_tests.
TEST_F(HboneSecurityTest, DISABLED_StalledHandshakeFloodMemory) {
  for (const char* bound : {"512", "64", "1000000"}) {
    startAgents({"--max-pending-handshakes", bound});
    std::this_thread::sleep_for(seconds(1));
    const long before = rssKb(*agent2_);
    Process& flood =
        cluster_->startInPod("outsider", {kPython, clientScript(), "stall-many", "--to",
                                          kCartV1Hbone, "--count", "2000", "--timeout", "6"});
    ASSERT_TRUE(flood.waitForOutput("\"stalled\"", seconds(60))) << flood.output();
    std::this_thread::sleep_for(seconds(2));
    const long during = rssKb(*agent2_);
    ASSERT_TRUE(flood.waitExit(seconds(30)).has_value());
    std::cout << "stalled handshake flood: --max-pending-handshakes " << bound << ": agent RSS "
              << before / 1024 << " MB before, " << during / 1024
              << " MB with 2,000 stalled handshakes; " << flood.output() << "\n";
    for (Process* agent : {agent1_, agent2_}) {
      agent->signal(SIGTERM);
      (void)agent->waitExit(seconds(10));
    }
  }
}

// Floods (reliability issue): an authenticated peer sends PINGs and never reads the ACKs. The
// agent answers while the kernel's socket buffers take them, then holds at most 256 KiB of its
// own and 1,000 ACKs inside nghttp2; one more is a flood: GOAWAY ENHANCE_YOUR_CALM (after the
// ACKs, once the peer reads), counted, and the connection closes. Meanwhile the agent serves
// other clients, and its memory grows by a bounded amount whatever the flood's length (before
// this defence: +18 MB per million PINGs, without end).
TEST_F(HboneSecurityTest, PingFloodFromAPeerThatDoesNotReadIsCutWithBoundedMemory) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  std::this_thread::sleep_for(seconds(1));
  const long rss_before = rssKb(*agent2_);
  std::vector<std::string> argv = {kPython,   clientScript(), "ping-flood", "--to", kCartV1Hbone,
                                   "--count", "4000000",      "--timeout",  "2"};
  for (const std::string& a : credentialArgs(meshClient())) argv.push_back(a);
  Process& flood = cluster_->startInPod("outsider", argv);
  const long peak = peakRssKbWhile(*agent2_, [&] {
    std::this_thread::sleep_for(milliseconds(300));  // the flood is under way
    expectCartV1StillServes("the start of a PING flood");
    ASSERT_TRUE(flood.waitExit(seconds(120)).has_value()) << flood.output();
  });
  auto r = findEvent(flood.output(), "result");
  ASSERT_TRUE(r.has_value()) << flood.output();
  std::cout << "PING flood: agent RSS " << rss_before << " KiB before, peak " << peak << " KiB; "
            << r->dump() << "\n";
  EXPECT_EQ(number(*r, "goaway"), hbone::kH2EnhanceYourCalm) << r->dump();
  EXPECT_GT(number(*r, "pings_sent"), 10000) << r->dump();
  EXPECT_LT(number(*r, "pings_sent"), 4000000) << "the agent never stopped reading: " << r->dump();
  EXPECT_LT(number(*r, "acks_received"), number(*r, "pings_sent")) << r->dump();
  EXPECT_EQ(tunnelStats(*agent2_)["hbone_floods_control"], before["hbone_floods_control"] + 1);
  EXPECT_TRUE(agent2_->waitForOutput("HTTP/2 flood", seconds(2))) << agent2_->output();
  EXPECT_LE(peak - rss_before, 4 * 1024)
      << "agent RSS grew from " << rss_before << " to " << peak << " KiB";
  expectCartV1StillServes("a PING flood");
}

// Floods (reliability issue): rapid reset (CVE-2023-44487). Each CONNECT is reset (CANCEL) in
// the same write that carries it. The agent connects to the application only after the input
// batch that carried the request, so a stream reset in the same batch costs the application
// nothing (before: 46,467 connects reached it from 50,000 reset streams); once half of the
// streams (at least 250) were reset before their answer, the connection gets GOAWAY
// ENHANCE_YOUR_CALM, counted.
TEST_F(HboneSecurityTest, RapidResetIsCutAndResetStreamsNeverReachTheApplication) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  Process& app = serve("cart-v1", 8080, /*count=*/0);
  std::vector<std::string> args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", kCartV1App, "--count", "20000"});
  auto r = hboneClient("rapid-reset", args, "outsider", seconds(60));
  EXPECT_EQ(number(r, "goaway"), hbone::kH2EnhanceYourCalm) << r.dump();
  const int64_t sent = number(r, "sent");
  EXPECT_GE(sent, 250) << r.dump();
  EXPECT_LT(sent, 20000) << r.dump();
  EXPECT_TRUE(waitFor(
      [&] {
        return tunnelStats(*agent2_)["hbone_floods_reset"] == before["hbone_floods_reset"] + 1;
      },
      seconds(5)))
      << agent2_->output();
  auto after = tunnelStats(*agent2_);
  const uint64_t skipped =
      after["hbone_reset_before_connect"] - before["hbone_reset_before_connect"];
  const uint64_t accepted = after["hbone_streams_accepted"] - before["hbone_streams_accepted"];
  std::this_thread::sleep_for(seconds(1));
  const size_t app_connections = countOf(app.output(), "\"event\":\"conn\"");
  std::cout << "rapid reset: " << sent << " streams sent, " << skipped
            << " reset before the application connect, " << app_connections
            << " connections reached the application\n";
  EXPECT_GE(skipped, 225u);  // of the 250 the agent took before the flood bound
  EXPECT_LE(app_connections, 25u) << app.output();
  EXPECT_LE(accepted, 25u);
  (void)app.signal(SIGTERM);
  (void)app.waitExit(seconds(5));
  expectCartV1StillServes("a rapid reset");
}

// The --hbone-* bounds reach the sessions: a client sees the stream window and the stream limit
// in the agent's SETTINGS and the connection window in its first WINDOW_UPDATE, and a stalled
// handshake is closed after --hbone-handshake-timeout-s.
TEST_F(HboneSecurityTest, HboneBoundFlagsReachTheSessions) {
  startAgents({"--hbone-stream-window", "1MiB", "--hbone-connection-window", "8MiB",
               "--hbone-max-streams", "7", "--hbone-handshake-timeout-s", "2",
               "--hbone-max-pending-output", "64KiB"});
  if (HasFatalFailure()) return;
  auto probe = hboneClient("probe", credentialArgs(meshClient()));
  ASSERT_TRUE(probe.contains("settings")) << probe.dump();
  // SETTINGS_MAX_CONCURRENT_STREAMS (3) and SETTINGS_INITIAL_WINDOW_SIZE (4).
  EXPECT_EQ(probe["settings"].value("3", -1), 7) << probe.dump();
  EXPECT_EQ(probe["settings"].value("4", -1), 1 << 20) << probe.dump();
  EXPECT_EQ(number(probe, "connection_window_increment"), (8 << 20) - 65535) << probe.dump();

  Process& stall = cluster_->startInPod(
      "outsider", {kPython, clientScript(), "stall", "--to", kCartV1Hbone, "--timeout", "25"});
  ASSERT_TRUE(stall.waitExit(seconds(30)).has_value()) << stall.output();
  auto r = findEvent(stall.output(), "result");
  ASSERT_TRUE(r.has_value()) << stall.output();
  EXPECT_TRUE(closedByServer(*r)) << r->dump();
  EXPECT_GE(r->value("seconds", 0.0), 1.5) << r->dump();
  EXPECT_LE(r->value("seconds", 99.0), 6.0) << "not the 2 s handshake timeout: " << r->dump();
  expectCartV1StillServes("an agent with its own HBONE bounds");
}

// Floods (reliability issue): authenticated peers write into streams whose application never
// reads. Flow control holds each stream to 4 MiB and each connection to 16 MiB, but only the
// buffer budget bounds the sum: six peers, four streams each, may hold 96 MiB at a time (agent
// RSS +88 MB with --max-buffered-bytes 0) and write GBs over the flood as streams are replaced.
// Against a 4 MiB budget the agent resets the streams holding the most and refuses new ones
// from the peers that hold much, counts both, keeps its memory near the budget whatever the
// flood's length, keeps serving a normal client meanwhile, and holds nothing once the peers
// are gone.
TEST_F(HboneSecurityTest, UnreadDataBeyondTheBufferBudgetShedsTheStreamsHoldingTheMost) {
  // cart-v1's port 9090 (the application that never reads) is allowed for frontend too.
  std::string config = testConfig();
  const std::string kPorts = "destinationPorts: [8080]";
  auto at = config.find(kPorts);
  ASSERT_NE(at, std::string::npos) << "examples/two-nodes.yaml changed";
  config.replace(at, kPorts.size(), "destinationPorts: [8080, 9090]");
  startAgents({"--max-buffered-bytes", "4MiB"}, cluster_->writeFile("budget.yaml", config));
  if (HasFatalFailure()) return;
  // Accepts and never reads; a small receive buffer keeps what it does not read in the agent
  // rather than in the kernel.
  Process& sink = cluster_->startInPod(
      "cart-v1", {kPython, "-c",
                  "import json, socket\n"
                  "s = socket.socket()\n"
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)\n"
                  "s.bind(('0.0.0.0', 9090))\n"
                  "s.listen(512)\n"
                  "print(json.dumps({'event': 'listening', 'port': 9090}), flush=True)\n"
                  "held = []\n"
                  "while True:\n"
                  "    held.append(s.accept()[0])\n"});
  ASSERT_TRUE(sink.waitForOutput("listening", seconds(10))) << sink.output();
  auto before = tunnelStats(*agent2_);
  std::this_thread::sleep_for(seconds(1));
  const long rss_before = rssKb(*agent2_);
  std::vector<std::string> argv = {kPython,
                                   clientScript(),
                                   "fill",
                                   "--to",
                                   kCartV1Hbone,
                                   "--authority",
                                   "10.244.2.20:9090",
                                   "--count",
                                   "4",
                                   "--duration",
                                   "6"};
  for (const std::string& a : credentialArgs(meshClient())) argv.push_back(a);
  std::vector<Process*> peers;
  const long peak = peakRssKbWhile(*agent2_, [&] {
    for (int i = 0; i < 6; ++i) peers.push_back(&cluster_->startInPod("outsider", argv));
    std::this_thread::sleep_for(seconds(2));  // the budget is reached by now
    expectCartV1StillServes("2 s into the flood of unread data");
    for (Process* p : peers) ASSERT_TRUE(p->waitExit(seconds(60)).has_value()) << p->output();
  });
  uint64_t sent = 0;
  int64_t resets = 0;
  for (Process* p : peers) {
    auto r = findEvent(p->output(), "result");
    ASSERT_TRUE(r.has_value()) << p->output();
    sent += static_cast<uint64_t>(number(*r, "bytes_sent", 0));
    resets += number(*r, "reset", 0);
    EXPECT_GE(number(*r, "accepted"), 1) << r->dump();
  }
  auto after = tunnelStats(*agent2_);
  const uint64_t shed = after["overload_streams_shed"] - before["overload_streams_shed"];
  std::cout << "unread-data flood: " << sent << " bytes sent by 6 peers, " << shed
            << " streams reset by the agent (the peers saw " << resets << "), "
            << after["overload_streams_refused"] - before["overload_streams_refused"]
            << " refused; agent RSS " << rss_before << " KiB before, peak " << peak << " KiB\n";
  EXPECT_GT(sent, uint64_t{64} << 20) << "the peers could not write past the budget";
  EXPECT_GE(shed, 4u);
  EXPECT_GE(after["overload_streams_refused"], before["overload_streams_refused"] + 1)
      << "no peer holding much was refused a new stream while the budget was spent";
  EXPECT_GE(resets, 4);
  EXPECT_TRUE(agent2_->waitForOutput("overload:", seconds(2))) << agent2_->output();
  // The budget, the receive buffers the flood fills (2 MiB per worker and ring) and the
  // allocator's slack: 19 MB measured.
  EXPECT_LE(peak - rss_before, 32 * 1024)
      << "agent RSS grew from " << rss_before << " to " << peak << " KiB";
  // The peers are gone: nothing stays counted.
  EXPECT_TRUE(waitFor([&] { return tunnelStats(*agent2_)["buffered_bytes"] == 0; }, seconds(5)))
      << tunnelStats(*agent2_)["buffered_bytes"];
  expectCartV1StillServes("a flood of unread data");
}

// ---- interop ----

// Must show 9: python-h2 over Python's ssl (TLS 1.3, ALPN h2, a client certificate from the
// cluster's CA) opens CONNECT 10.244.2.20:8080 on cart-v1's 15008: 200, the server presents
// cart's identity, 1 MiB each way arrives intact (checked by nm-testapp and by the client),
// the application sees the client's address, and agent2's access log names the client's
// identity. A CONNECT to an address that is not the pod's is answered 400.
TEST_F(HboneSecurityTest, IndependentHttp2ClientInteroperates) {
  startAgents();
  const ClientCredentials mesh = meshClient();
  constexpr uint64_t kBytes = 1 << 20;
  Process& server = serve("cart-v1", 8080);

  auto args = credentialArgs(mesh);
  args.insert(args.end(), {"--authority", kCartV1App, "--send", std::to_string(kBytes), "--expect",
                           std::to_string(kBytes), "--seed", "77"});
  auto r = hboneClient("connect", args);
  EXPECT_EQ(field(r, "handshake"), "ok") << r.dump();
  EXPECT_EQ(field(r, "version"), "TLSv1.3") << r.dump();
  EXPECT_EQ(field(r, "alpn"), "h2") << r.dump();
  EXPECT_NE(field(r, "cipher").find("GCM"), std::string::npos) << r.dump();
  EXPECT_EQ(field(r, "server_identity"), kCartId) << r.dump();
  EXPECT_EQ(number(r, "status"), 200) << r.dump();
  EXPECT_EQ(r.value("sent", uint64_t{0}), kBytes + 16) << r.dump();
  EXPECT_EQ(r.value("received", uint64_t{0}), kBytes) << r.dump();
  EXPECT_TRUE(r.value("received_ok", false)) << r.dump();
  EXPECT_TRUE(r.value("stream_ended", false)) << r.dump();
  EXPECT_EQ(number(r, "stream_reset"), -1) << r.dump();

  ASSERT_TRUE(server.waitExit(seconds(10)).has_value()) << server.output();
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_TRUE(conn->value("received_ok", false)) << conn->dump();
  EXPECT_EQ(conn->value("received", uint64_t{0}), kBytes) << conn->dump();
  EXPECT_EQ(conn->value("sent", uint64_t{0}), kBytes) << conn->dump();
  EXPECT_EQ(conn->value("local", ""), kCartV1App) << conn->dump();
  EXPECT_EQ(hostOf(conn->value("peer", "")), kOutsiderIp) << conn->dump();

  ASSERT_TRUE(agent2_->waitForOutput("direction=inbound pod=shop/cart-v1-5c2a", seconds(5)))
      << agent2_->output();
  EXPECT_TRUE(std::regex_search(
      agent2_->output(),
      std::regex(R"(direction=inbound pod=shop/cart-v1-5c2a src=10\.244\.1\.40:\d+ )"
                 R"(dst=10\.244\.2\.20:8080 bytes_to_dst=1048592 bytes_from_dst=1048576 )"
                 R"(duration_ms=\d+ result=ok transport=hbone )"
                 R"(src_identity=spiffe://cluster\.local/ns/shop/sa/frontend )"
                 R"(dst_identity=spiffe://cluster\.local/ns/shop/sa/cart)")))
      << agent2_->output();

  // Not an address of the pod behind this 15008.
  auto bad = credentialArgs(mesh);
  bad.insert(bad.end(), {"--authority", "10.244.2.99:8080"});
  auto refused = hboneClient("connect", bad);
  EXPECT_EQ(number(refused, "status"), 400) << refused.dump();
  EXPECT_TRUE(agent2_->waitForOutput(
      "refused with 400: target 10.244.2.99:8080 is not an address of this pod", seconds(5)))
      << agent2_->output();
}

// ---- regression tests of bugs found and fixed earlier (each comment says what was wrong) ----

// Was a bug: the inbound access log took the client's address from the request's `forwarded`
// header without checking it (ztunnel/hbone_relay.cc, forwardedFor() and Worker::onRequest():
// the comment promises "when it names the same host as the connection's peer", the code
// accepts any address). Any workload holding a mesh certificate can write an arbitrary
// src= into the destination's access log, while the application itself is (correctly) reached
// from the connection's real peer address.
TEST_F(HboneSecurityTest, AccessLogSourceIsNotTakenFromAnUncheckedForwardedHeader) {
  startAgents();
  Process& server = serve("cart-v1", 8080);
  auto args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", kCartV1App, "--send", "4096", "--expect", "4096",
                           "--forwarded", "for=\"10.9.9.9:4242\""});
  auto r = hboneClient("connect", args);
  EXPECT_EQ(number(r, "status"), 200) << r.dump();
  EXPECT_TRUE(r.value("received_ok", false)) << r.dump();
  ASSERT_TRUE(server.waitExit(seconds(10)).has_value()) << server.output();
  auto conn = findEvent(server.output(), "conn");
  ASSERT_TRUE(conn.has_value()) << server.output();
  EXPECT_EQ(hostOf(conn->value("peer", "")), kOutsiderIp) << conn->dump();

  ASSERT_TRUE(agent2_->waitForOutput("direction=inbound pod=shop/cart-v1-5c2a", seconds(5)))
      << agent2_->output();
  EXPECT_EQ(agent2_->output().find("src=10.9.9.9"), std::string::npos) << agent2_->output();
  EXPECT_TRUE(std::regex_search(
      agent2_->output(),
      std::regex(R"(direction=inbound pod=shop/cart-v1-5c2a src=10\.244\.1\.40:\d+ )")))
      << agent2_->output();
}

// Was a bug: requests refused inside the HTTP/2 layer were neither logged nor counted. A GET (400)
// and an oversized header block (431) are answered by H2Session::finishRequestHeaders()
// (ztunnel/hbone/h2_session.cc) without reaching Worker::onRequest(), so agent2 logs no
// "HBONE CONNECT ... refused with" line and hbone_streams_rejected ("answered 400/401/503")
// stayed unchanged: an operator could not see these refusals.
TEST_F(HboneSecurityTest, RefusalsInsideHttp2AreLoggedAndCounted) {
  startAgents();
  auto before = tunnelStats(*agent2_);
  auto args = credentialArgs(meshClient());
  args.insert(args.end(), {"--authority", kCartV1App});
  auto get = hboneClient("get", args);
  EXPECT_EQ(number(get, "status"), 400) << get.dump();
  auto huge = hboneClient("huge-header", args);
  EXPECT_EQ(number(huge, "status"), 431) << huge.dump();

  EXPECT_TRUE(agent2_->waitForOutput("refused with 400", seconds(2))) << agent2_->output();
  EXPECT_TRUE(agent2_->waitForOutput("refused with 431", seconds(2))) << agent2_->output();
  EXPECT_EQ(tunnelStats(*agent2_)["hbone_streams_rejected"], before["hbone_streams_rejected"] + 2);
}

// Was a bug: a fatal error on an HBONE connection dropped what the server had queued to tell the
// client why. Worker::onHboneRecv() (ztunnel/hbone_relay.cc) calls failHbone() as soon as
// HboneTransport::onSocketData() fails; failHbone() marks the connection dead (flush() then
// skips it) and sets SO_LINGER 0, so the TLS alert (certificate_required) or the HTTP/2 GOAWAY
// (PROTOCOL_ERROR, RFC 9113 §5.4.1: SHOULD be sent before closing) never leaves; the client
// saw a reset or a bare EOF, while the agent logged "sent GOAWAY PROTOCOL_ERROR".
TEST_F(HboneSecurityTest, FatalErrorsAreAnnouncedBeforeTheClose) {
  startAgents();
  const ClientCredentials mesh = meshClient();
  auto data_first = hboneClient("data-first", credentialArgs(mesh));
  EXPECT_EQ(number(data_first, "goaway"), 1) << "no GOAWAY(PROTOCOL_ERROR): " << data_first.dump();

  auto no_cert = hboneClient("probe", {"--ca", mesh.ca});
  EXPECT_NE(field(no_cert, "closed").find("CERTIFICATE_REQUIRED"), std::string::npos)
      << "no certificate_required alert: " << no_cert.dump();
}

}  // namespace
}  // namespace nodemesh::sim
