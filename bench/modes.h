#pragma once

// What carries the client pod's traffic to the server pod, one implementation per column of the
// results table:
//
//   direct    no tunnel: the client connects to the server pod's address (the baseline).
//   nodemesh  a nodemesh-agent per node (one io_uring worker each): the client connects to the
//             server pod's address; eBPF capture and HBONE (HTTP/2 CONNECT over mTLS) do the rest.
//   stunnel   stunnel in the client pod (the client connects to 127.0.0.1) and in the server pod
//             (it forwards to 127.0.0.1): mTLS between them.
//   haproxy   the same with HAProxy (mode tcp, nbthread 1).
//
// The peers are configured like nodemesh's HBONE: TLS 1.3 only, TLS_AES_128_GCM_SHA256 /
// TLS_AES_256_GCM_SHA384, key exchange X25519 / P-256, P-256 certificates from one CA, both
// sides present and verify certificates, and no session resumption (nodemesh verifies every
// TLS connection in full; resumption would skip the certificate checks).

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_env.h"
#include "common/ip_address.h"

namespace nodemesh::bench {

class Mode {
 public:
  virtual ~Mode() = default;
  virtual std::string name() const = 0;
  // Starts the tunnel and waits until the echo service answers through it. Throws
  // sim::HarnessError.
  virtual void start() = 0;
  // Stops it (and checks it worked as configured); facts worth keeping go to the results.
  virtual std::map<std::string, std::string> stop() = 0;
  // Where the client application connects to reach `service`.
  virtual SocketAddress endpoint(Service service) const = 0;
  // The tunnel's processes, whose CPU and memory are the cost of the mode (empty: direct).
  virtual std::vector<pid_t> tunnelPids() const = 0;
};

// `name` is one of "direct", "nodemesh", "stunnel", "haproxy", or "nodemesh-<variant>" for a
// variant of Options::agent_variants (another agent build, to measure a change before and after
// in one run);
// null for anything else.
std::unique_ptr<Mode> makeMode(const std::string& name, Environment& env);

}  // namespace nodemesh::bench
