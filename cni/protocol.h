#pragma once

// The wire protocol between nodemesh-cni (the CNI plugin) and the node agent's CniServer.
//
// One request per connection on a unix stream socket: the plugin connects, writes one JSON
// object on one line (terminated by '\n'), and the agent answers with one JSON object on one line,
// then closes. Both objects carry `"version": 1` (kProtocolVersion); a side that receives another
// version answers or fails with a clear error instead of guessing. No I/O here: encode and decode
// only, so that both ends and the tests share one definition.
//
// Request:  {"version":1,"command":"ADD","containerId":"...","netns":"/var/run/netns/...",
//            "ifName":"eth0","podNamespace":"shop","podName":"cart-1","podUid":"...",
//            "ips":["10.244.1.5/24"]}
// Reply:    {"version":1,"ok":true,"enrolled":true,"message":"..."}
//           {"version":1,"ok":false,"error":"..."}

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nodemesh::cni {

inline constexpr int kProtocolVersion = 1;
// A request or reply line longer than this is refused (a pod's request is a few hundred bytes).
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

enum class CniCommand { kAdd, kDel, kCheck };

std::string_view commandName(CniCommand command);

struct CniRequest {
  CniCommand command = CniCommand::kAdd;
  std::string container_id;
  std::string netns;  // the pod's network namespace path; may be empty on DEL (CNI spec)
  std::string if_name;
  // From CNI_ARGS (K8S_POD_*); empty when the runtime did not set them.
  std::string pod_namespace;
  std::string pod_name;
  std::string pod_uid;
  // The CIDR strings of the chain's result (prevResult.ips[].address), e.g. "10.244.1.5/24".
  std::vector<std::string> ips;

  bool operator==(const CniRequest&) const = default;
};

struct CniReply {
  bool ok = true;
  bool enrolled = false;  // ok: the agent captures the pod's traffic now
  std::string message;    // ok: what the agent did, for the runtime's log
  std::string error;      // !ok: why the agent refuses (the plugin fails the pod's ADD)

  static CniReply success(bool enrolled, std::string message) {
    return CniReply{true, enrolled, std::move(message), {}};
  }
  static CniReply failure(std::string error) {
    return CniReply{false, false, {}, std::move(error)};
  }

  bool operator==(const CniReply&) const = default;
};

// One line each, '\n' included.
std::string encodeRequest(const CniRequest& request);
std::string encodeReply(const CniReply& reply);

// A line without its '\n' (a trailing "\n" or "\r\n" is accepted). Errors name the bad field.
Result<CniRequest> decodeRequest(std::string_view line);
Result<CniReply> decodeReply(std::string_view line);

// "10.244.1.5/24": an address and a prefix length that fits it, the form of CniRequest::ips
// (decodeRequest refuses anything else; the plugin checks prevResult's ips with it).
bool isIpCidr(std::string_view text);

}  // namespace nodemesh::cni
