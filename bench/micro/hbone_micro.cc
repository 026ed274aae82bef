// nm-hbone-micro: the user-space cost of the HBONE data path, without sockets, kernel or other
// processes. A client and a server HboneTransport (TLS 1.3 with the local CA's P-256
// certificates, HTTP/2 on nghttp2, as the agent builds them) exchange one CONNECT stream's
// bytes through memory; the "socket" hands ciphertext over in 16 KiB chunks, as the worker's
// receive buffers do. The figure is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID) per GiB of
// payload, which other load on the machine does not change, unlike wall-clock throughput.
//
//   nm-hbone-micro [--mib N] [--repeats R] [--one-write]
//                                               N MiB per run (default 1024), median of R (5);
//                                               --one-write: one socket write per round, as
//                                               the agent's one send in flight, so the stream
//                                               queue stays near full (without it each round
//                                               drains the queue)
//   nm-hbone-micro --message B [--count C] [--repeats R]
//                                               ping-pong: C round trips (default 200000) of a
//                                               B-byte message the server echoes back
//
// Prints one JSON line: {"cpu_ns_per_kib": ..., "gib_per_cpu_second": ..., "runs": [...]}, or
// with --message {"cpu_ns_per_round_trip": ..., "runs": [...]} (both ends' CPU: each message
// is encrypted, framed, decrypted and unframed once on its way out and once on its way back).

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hbone/h2_session.h"
#include "hbone/hbone_transport.h"
#include "hbone/tls/tls_context.h"
#include "hbone/tls/tls_session.h"
#include "identity/clock.h"
#include "identity/local_ca.h"

namespace nodemesh::bench::micro {
namespace {

using hbone::H2Role;
using hbone::HboneTransport;
using hbone::StreamId;
using identity::SpiffeId;

constexpr size_t kChunk = 16 * 1024;  // the worker's receive buffer size

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "nm-hbone-micro: %s\n", why.c_str());
  std::exit(1);
}

template <typename T>
T check(Result<T> r, const char* what) {
  if (!r.ok()) die(std::string(what) + ": " + r.error().message);
  return std::move(r).value();
}

double threadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// One end: acknowledges received data at once (as the worker does once it wrote it on).
struct Side final : hbone::H2Handler {
  void onRequest(StreamId s, const hbone::ConnectRequest& /*request*/) override {
    (void)transport->h2().respond(s, 200);
    stream = s;
  }
  void onResponse(StreamId /*stream*/, int status) override { up = status == 200; }
  void onData(StreamId s, std::span<const uint8_t> data) override {
    received += data.size();
    if (echo) echo_bytes.insert(echo_bytes.end(), data.begin(), data.end());
    (void)transport->h2().consumed(s, data.size());
  }

  std::unique_ptr<HboneTransport> transport;
  std::optional<StreamId> stream;
  bool up = false;
  uint64_t received = 0;
  bool echo = false;                // ping-pong: what arrives is sent back
  std::vector<uint8_t> echo_bytes;  // arrived, to send back
  std::vector<uint8_t> wire;        // ciphertext on its way to this side
};

// Moves what `from` has to write onto `to`'s wire (the kernel's copy), everything or with
// `one_write` only what TLS holds now (at most its 64 KiB bound), then feeds `to` in
// receive-buffer-sized chunks.
void carry(Side& from, Side& to, bool one_write = false) {
  for (;;) {
    auto out = from.transport->socketOutput();
    if (out.empty()) break;
    to.wire.insert(to.wire.end(), out.begin(), out.end());
    from.transport->consumeSocketOutput(out.size());
    if (one_write) break;
  }
  size_t offset = 0;
  while (offset < to.wire.size()) {
    const size_t n = std::min(kChunk, to.wire.size() - offset);
    auto taken = to.transport->onSocketData(std::span(to.wire).subspan(offset, n));
    if (!taken.ok()) die("transport: " + taken.error().message);
    if (*taken == 0) break;
    offset += *taken;
  }
  to.wire.erase(to.wire.begin(), to.wire.begin() + static_cast<std::ptrdiff_t>(offset));
}

// What a run measures: a bulk transfer of `bytes`, or `count` round trips of `message` bytes.
struct Workload {
  uint64_t bytes = 0;
  size_t message = 0;
  uint64_t count = 0;
  bool one_write = false;
};

double runOnce(SSL_CTX* client_ctx, SSL_CTX* server_ctx, const SpiffeId& server_id,
               const Workload& work) {
  Side client;
  Side server;
  server.echo = work.message > 0;
  client.transport =
      check(HboneTransport::create(
                check(tls::TlsSession::client(client_ctx, {server_id}), "client session"),
                H2Role::kClient, client),
            "client transport");
  server.transport =
      check(HboneTransport::create(check(tls::TlsSession::server(server_ctx), "server session"),
                                   H2Role::kServer, server),
            "server transport");
  hbone::ConnectHeaders headers;
  const StreamId id =
      check(client.transport->h2().openConnect("10.244.2.20:8080", headers), "CONNECT");
  for (int i = 0; i < 20 && !client.up; ++i) {
    carry(client, server);
    carry(server, client);
  }
  if (!client.up) die("the CONNECT was not answered");

  std::vector<uint8_t> payload(work.message > 0 ? work.message : kChunk);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 31);
  if (work.message > 0) {
    const StreamId server_stream = server.stream.value_or(0);
    const double start = threadCpuSeconds();
    for (uint64_t i = 0; i < work.count; ++i) {
      const uint64_t expect = client.received + payload.size();
      auto n = client.transport->h2().send(id, payload);
      if (!n.ok() || *n != payload.size()) die("send: the stream queue is full");
      carry(client, server);
      auto echoed = server.transport->h2().send(server_stream, server.echo_bytes);
      if (!echoed.ok() || *echoed != server.echo_bytes.size())
        die("echo: the stream queue is full");
      server.echo_bytes.clear();
      carry(server, client);
      if (client.received != expect) die("the echo did not come back whole");
    }
    return threadCpuSeconds() - start;
  }
  const uint64_t bytes = work.bytes;
  uint64_t sent = 0;
  const double start = threadCpuSeconds();
  while (server.received < bytes) {
    // The application's bytes, a receive buffer at a time, until the stream queue is full.
    while (sent < bytes) {
      auto n = client.transport->h2().send(id, payload);
      if (!n.ok()) die("send: " + n.error().message);
      if (*n == 0) break;
      sent += *n;
    }
    carry(client, server, work.one_write);
    carry(server, client);  // WINDOW_UPDATEs
  }
  return threadCpuSeconds() - start;
}

int run(int argc, char** argv) {
  uint64_t mib = 1024;
  Workload work;
  work.count = 200000;
  int repeats = 5;
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--one-write") {
      work.one_write = true;
      --i;  // takes no value
      continue;
    }
    if (i + 1 == argc) die("missing the value of " + flag);
    if (flag == "--mib") {
      mib = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--message") {
      work.message = std::strtoull(argv[i + 1], nullptr, 10);
      if (work.message == 0 || work.message > kChunk) die("--message must be 1..16384 bytes");
    } else if (flag == "--count") {
      work.count = std::strtoull(argv[i + 1], nullptr, 10);
      if (work.count == 0) die("--count must be positive");
    } else if (flag == "--repeats") {
      repeats = static_cast<int>(std::strtol(argv[i + 1], nullptr, 10));
    } else {
      die("unknown flag " + flag +
          " (--mib N [--one-write] | --message B [--count C], --repeats R)");
    }
  }
  if (mib == 0 || repeats <= 0) die("--mib and --repeats must be positive");

  char dir_template[] = "/tmp/nm-hbone-micro-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) die("mkdtemp failed");
  const std::string dir = dir_template;
  identity::SystemClock clock;
  auto ca = check(identity::LocalCa::loadOrCreate(dir, "cluster.local", clock), "CA");
  const SpiffeId client_id = check(SpiffeId::create("cluster.local", "bench", "client"), "id");
  const SpiffeId server_id = check(SpiffeId::create("cluster.local", "bench", "server"), "id");
  auto factory = check(tls::TlsContextFactory::create(ca->rootCertificate()), "factory");
  auto client_ctx = check(factory.clientContext(*check(ca->issue(client_id), "issue")), "ctx");
  auto server_ctx = check(factory.serverContext(*check(ca->issue(server_id), "issue")), "ctx");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);

  work.bytes = mib << 20;
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    const double cpu = runOnce(client_ctx.get(), server_ctx.get(), server_id, work);
    runs.push_back(work.message > 0 ? cpu * 1e9 / static_cast<double>(work.count)
                                    : cpu * 1e9 / static_cast<double>(work.bytes >> 10));
  }
  std::vector<double> sorted = runs;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  nlohmann::json out;
  if (work.message > 0) {
    out = {{"message", work.message},
           {"count", work.count},
           {"cpu_ns_per_round_trip", median},
           {"runs", runs}};
  } else {
    out = {{"mib", mib},
           {"one_write", work.one_write},
           {"cpu_ns_per_kib", median},
           {"gib_per_cpu_second", 1e9 / median / (1 << 20)},
           {"runs", runs}};
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace nodemesh::bench::micro

int main(int argc, char** argv) {
  try {
    return nodemesh::bench::micro::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nm-hbone-micro: %s\n", e.what());
    return 1;
  }
}
