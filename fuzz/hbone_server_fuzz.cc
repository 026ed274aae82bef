// Fuzz target: the server side of HBONE's HTTP/2 codec (hbone::H2Session, H2Role::kServer).
// The input is what a client sends on an HBONE connection after TLS: the connection preface,
// SETTINGS, CONNECT HEADERS, DATA, RST_STREAM, PING, GOAWAY... It is fed in chunks, with the
// session's output drained (in short writes) between them, to a handler that answers the way
// the tunnel does: 200 and echo, 200 and close, 400, 401, reset, or an answer after receive()
// returned, chosen by stream id so the fuzzer reaches every path.
// Invariants checked: every DATA byte given back with consumed() leaves unconsumedBytes() at 0.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/h2_fuzz_handler.h"
#include "hbone/h2_session.h"

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
  auto created = H2Session::create(H2Role::kServer, handler);
  nodemesh::fuzz::check(created.ok());
  H2Session& session = **created;
  handler.session = &session;
  nodemesh::fuzz::runH2Session(session, handler, {data, size});
  return 0;
}
