// nm-testapp: a small blocking TCP tool for end-to-end tests. It plays the application in a
// pod: the server and the client each print JSON lines on stdout that tests parse, and the
// payload is a deterministic stream (stream.h) so any corruption or misdelivery is detected.
//
//   nm-testapp serve --port P [--bind IP] [--count N] [--timeout-ms T] [--parallel N]
//                    [--delay-ms D]   (wait D ms before replying: a slow endpoint)
//   nm-testapp connect --to IP:PORT --send N --expect M [--seed S] [--bind IP] [--timeout-ms T]
//                      [--v4-mapped 1]   (IPv4 destination through an AF_INET6 socket)
//                      [--rate BYTES]    (pace the upload at BYTES per second)
//   nm-testapp connect-many --to IP:PORT --count N [--send N] [--expect M] [--seed S]
//                           [--timeout-ms T] [--parallel P | --concurrency C] [--rate BYTES]
//
// serve --parallel N handles up to N connections at once (a thread each); the default, 1,
// serves them one after the other. Either way it prints one "conn" line per connection.
// connect-many --parallel P runs the connections in waves of P threads: every connection of a
// wave is established before any of them transfers (a barrier), so P connections are truly
// open at the same time; "connected_together" reports the largest such wave.
// connect-many --concurrency C instead keeps C connections going: C threads each run
// connections back to back until N have been made (no waves, like a steady client pool;
// "connected_together" is then 0).
//
// Sizes accept K/M/G suffixes (binary). Exit status: 0 success, 1 a transfer failed,
// 2 usage error.

#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "tests/e2e/testapp/testapp_common.h"

int main(int argc, char** argv) {
  using namespace nodemesh::testapp;  // NOLINT(google-build-using-namespace)
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (argc < 2) usage("missing command");
    std::string_view command = argv[1];
    if (command == "serve") return serve(argc, argv);
    if (command == "connect") return connectCommand(argc, argv);
    if (command == "connect-many") return connectMany(argc, argv);
    usage("unknown command '" + std::string(command) + "'");
  } catch (const std::exception& e) {
    // Errors are reported as JSON events; this is for what a library still throws
    // (std::bad_alloc, std::system_error, a JSON error), which would otherwise abort.
    std::fprintf(stderr, "nm-testapp: %s\n", e.what());
    return kExitFailed;
  }
}
