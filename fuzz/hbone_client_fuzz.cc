// Fuzz target: the client side of HBONE's HTTP/2 codec (hbone::H2Session, H2Role::kClient).
// The session opens three CONNECT streams (as the tunnel's pool does), then the input is what
// the server answers: its SETTINGS, HEADERS with a status, DATA, RST_STREAM, PUSH_PROMISE,
// GOAWAY... fed in chunks with the output drained between them. The handler sends on a stream
// once it is answered 200, half-closes on the peer's END_STREAM, and gives back every DATA byte.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "fuzz/fuzz_support.h"
#include "fuzz/h2_fuzz_handler.h"
#include "hbone/h2_session.h"

using nodemesh::hbone::ConnectHeaders;
using nodemesh::hbone::H2Role;
using nodemesh::hbone::H2Session;

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nodemesh::fuzz::H2FuzzHandler handler;
  auto created = H2Session::create(H2Role::kClient, handler);
  nodemesh::fuzz::check(created.ok());
  H2Session& session = **created;
  handler.session = &session;
  ConnectHeaders headers;
  headers.forwarded_for = nodemesh::SocketAddress::parse("10.0.0.2:5000").value();
  headers.baggage = "k8s.namespace.name=default";
  headers.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  for (const char* target : {"10.0.0.1:8080", "10.0.0.1:8081", "[fd00::1]:80"}) {
    auto stream = session.openConnect(target, headers);
    nodemesh::fuzz::check(stream.ok());
    // Bytes queued before the 200 leave once the tunnel is up.
    (void)session.send(*stream, nodemesh::fuzz::asBytes("early bytes"));
  }
  nodemesh::fuzz::runH2Session(session, handler, {data, size});
  return 0;
}
