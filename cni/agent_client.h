#pragma once

#include <string>

#include "cni/protocol.h"
#include "common/result.h"

namespace nodemesh::cni {

// Sends one request to the agent's CniServer on a unix stream socket and reads its reply, all
// within timeout_ms. Any failure (no socket, nobody listening, a timeout, a reply that does not
// decode) is an error: to the plugin, the agent is then unavailable.
Result<CniReply> callAgent(const std::string& socket_path, int timeout_ms,
                           const CniRequest& request);

}  // namespace nodemesh::cni
