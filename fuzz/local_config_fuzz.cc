// Fuzz target: the local config file (config/local: ztunnel's format plus the waypoint's objects:
// workloads, services, policies, httpRoutes, grpcRoutes, destinationRules, rateLimitPolicies,
// requestAuthentications with inline JWKS). The input is a whole file; parseLocalConfig()
// promises never to throw and to report every problem with a line, or give a snapshot.
// Invariant checked: exactly one of the two.

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/local/local_config.h"
#include "fuzz/fuzz_support.h"

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nodemesh::config::LoadResult result =
      nodemesh::config::parseLocalConfig(nodemesh::fuzz::asText(data, size), "mesh.yaml");
  nodemesh::fuzz::check(result.ok() == (result.snapshot != nullptr));
  if (!result.ok()) (void)result.problemsText();
  return 0;
}
