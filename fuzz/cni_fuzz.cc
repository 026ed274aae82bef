// Fuzz target: what the container runtime hands nodemesh-cni (cni/plugin.h) and what the agent's
// CniServer reads from the plugin (cni/protocol.h). The input is CNI_ARGS on its first line and
// the network configuration JSON (stdin) after it. runPlugin() runs it as ADD, DEL, CHECK and
// VERSION against an agent stand-in that answers without I/O (it enrolls or refuses by pod
// name; it is never unreachable, since that path reads the state file). Each input line is also
// decoded as a request and a reply of the agent protocol.
// Invariants checked: a request the plugin sends decodes back to itself; runPlugin() never
// exits 0 with an empty stdout on ADD (a chained plugin must pass a result on).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cni/plugin.h"
#include "cni/protocol.h"
#include "common/result.h"
#include "fuzz/fuzz_support.h"

namespace {

using nodemesh::Result;
using nodemesh::fuzz::check;
namespace cni = nodemesh::cni;

Result<cni::CniReply> agent(const cni::PluginConfig& /*config*/, const cni::CniRequest& request) {
  // What the agent's CniServer would receive: the encoded line must decode to the same request.
  const std::string line = cni::encodeRequest(request);
  auto decoded = cni::decodeRequest(line);
  if (!decoded.ok() || *decoded != request) {
    std::fprintf(stderr, "request does not survive the wire: %s -> %s\n", line.c_str(),
                 decoded.ok() ? "another request" : decoded.error().message.c_str());
    std::abort();
  }
  if (request.pod_name.size() % 2 == 1) return cni::CniReply::failure("not in this node's mesh");
  return cni::CniReply::success(true, "enrolled");
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  nodemesh::fuzz::quietLogs();
  return 0;
}

// NOLINTNEXTLINE(readability-identifier-naming): libFuzzer calls it by this name.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = nodemesh::fuzz::asText(data, size);
  const size_t newline = input.find('\n');
  const std::string_view args = input.substr(0, newline);
  const std::string_view stdin_bytes =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);

  (void)cni::parseCniArgs(args);
  (void)cni::decodeRequest(args);
  (void)cni::decodeReply(args);
  (void)cni::decodeRequest(stdin_bytes);
  (void)cni::decodeReply(stdin_bytes);

  cni::PluginEnv env;
  env.container_id = "0123456789abcdef";
  env.netns = "/var/run/netns/cni-fuzz";
  env.if_name = "eth0";
  env.args = std::string(args);
  env.path = "/opt/cni/bin";
  for (const char* command : {"ADD", "DEL", "CHECK", "VERSION"}) {
    env.command = command;
    const cni::PluginOutcome outcome = cni::runPlugin(env, stdin_bytes, agent);
    if (env.command == "ADD" && outcome.exit_code == 0) check(!outcome.out.empty());
  }
  return 0;
}
