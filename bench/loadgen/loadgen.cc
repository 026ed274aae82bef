// nm-loadgen: the benchmark's own traffic tools, for what iperf3 and sockperf do not measure.
// Single-threaded epoll loops, IPv4, one JSON line of results on stdout.
//
//   nm-loadgen echo-server --port P            echoes every byte back (conn-rate, hold, probe)
//   nm-loadgen http-server --port P [--body N] HTTP/1.1 keep-alive, N-byte 200 to any request;
//       a connection that starts with the HTTP/2 preface is served as HTTP/2 (h2c)
//   nm-loadgen conn-rate --to IP:PORT --duration-ms D [--concurrency C] [--size N]
//       short connections: connect, send N bytes, read the N-byte echo, close; C at a time.
//       Reports completed connections per second.
//   nm-loadgen http-load --to IP:PORT --rate R --duration-ms D [--connections C] [--warmup-ms W]
//       HTTP/1.1 GETs at a FIXED rate R (open loop: request i is due at start + i/R whatever
//       the responses do, and its latency counts from when it was due, so a slow server cannot
//       hide its queueing: no coordinated omission). wrk only runs closed loop (as fast as the
//       server answers) and wrk2, its fixed-rate fork, is not packaged in Debian. Requests due
//       in the first W ms are sent but not in the percentiles; "slowest" lists the 10 slowest
//       counted requests with when they were due.
//   nm-loadgen hold --to IP:PORT --count N [--concurrency C] [--hold-ms H]
//       opens N connections (C connecting at once), each sends one byte and reads its echo;
//       then prints {"event":"ready"} and keeps them open, idle, until SIGTERM or H ms.
//   nm-loadgen probe --to IP:PORT [--timeout-ms T]
//       retries one echo round trip until it works (a tunnel is ready end to end) or T.
//
// Exit status: 0 success, 1 failure, 2 usage error.

#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>

#include "bench/loadgen/loadgen_common.h"

namespace nodemesh::bench::loadgen {
namespace {

int run(int argc, char** argv) {
  if (argc < 2) usage("missing command");
  std::string cmd = argv[1];
  ::signal(SIGPIPE, SIG_IGN);
  if (cmd == "echo-server") return serve(Flags(argc, argv, {"port"}), false);
  if (cmd == "http-server") return serve(Flags(argc, argv, {"port", "body"}), true);
  if (cmd == "conn-rate") {
    return connRate(Flags(argc, argv, {"to", "duration-ms", "concurrency", "size"}));
  }
  if (cmd == "http-load") {
    return httpLoad(Flags(argc, argv, {"to", "rate", "duration-ms", "connections", "warmup-ms"}));
  }
  if (cmd == "hold") return hold(Flags(argc, argv, {"to", "count", "concurrency", "hold-ms"}));
  if (cmd == "probe") return probe(Flags(argc, argv, {"to", "timeout-ms"}));
  usage("unknown command '" + cmd + "'");
}

}  // namespace
}  // namespace nodemesh::bench::loadgen

int main(int argc, char** argv) {
  try {
    return nodemesh::bench::loadgen::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nm-loadgen: %s\n", e.what());
    return 1;
  }
}
