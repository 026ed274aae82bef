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
// The waypoint benchmark's modes put an L7 hop between the client and two backend pods, which
// it splits 90/10 (bench_env.h); only the L7 scenarios run through them:
//
//   waypoint    the node agents and nodemesh-waypoint in the proxy pod: the client connects to
//               the backend service's VIP, its agent sends the connection over HBONE to the
//               waypoint, which routes each request by the HTTPRoute and sends it over HBONE
//               to a backend pod's agent.
//   haproxy-l7  HAProxy (mode http, nbthread 1) in the proxy pod, and nginx-l7 nginx (one
//   nginx-l7    process), terminating mutual TLS from the client pod and originating mutual
//               TLS to each backend pod. The TLS ends outside the proxy are HAProxy in mode tcp
//               for both, in the pods where nodemesh has its agents' in-pod sockets: in the
//               client pod (127.0.0.1:l7PeerPort, ALPN h2 or http/1.1) and in front of each
//               backend's HTTP server (kBackendTlsPort).
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
  // The L7 scenarios: where the client sends HTTP/1.1 or HTTP/2 (the server pod's HTTP port
  // unless the mode has an L7 hop).
  virtual SocketAddress httpEndpoint(HttpVersion /*version*/) const {
    return endpoint(Service::kHttp);
  }
  // The L7 hop's processes (the waypoint, a peer's L7 proxy), whose requests per core the L7
  // scenarios measure; empty without one.
  virtual std::vector<pid_t> proxyPids() const { return {}; }
};

// The modes with an L7 hop: waypoint, haproxy-l7, nginx-l7.
bool isL7Mode(const std::string& name);
// Whether mode `mode` runs `scenario`: direct and nodemesh (and its variants) run all, the L4
// peers all but the L7 scenarios, the L7 modes only those.
bool modeRuns(const std::string& mode, const std::string& scenario);

// Whether `name` is a mode makeMode() knows (a variant mode: when Options has that variant).
bool isKnownMode(const std::string& name, const Options& options);

// `name` is one of "direct", "nodemesh", "stunnel", "haproxy", "waypoint", "haproxy-l7",
// "nginx-l7", or "nodemesh-<variant>" for a
// variant of Options::agent_variants (another agent build, to measure a change before and after
// in one run);
// null for anything else.
std::unique_ptr<Mode> makeMode(const std::string& name, Environment& env);

}  // namespace nodemesh::bench
