#include "tunnel/relay_context.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace nodemesh::tunnel {

ConnectionInfo describeRecord(const ConnectionRecord& r, std::chrono::milliseconds age) {
  ConnectionInfo info;
  info.direction = r.direction;
  info.pod = r.pod;
  info.src = r.src;
  info.dst = r.dst;
  info.dst_service = r.dst_service;
  info.transport = r.transport;
  info.src_identity = r.src_identity;  // empty for plain TCP
  info.dst_identity = r.dst_identity;
  info.age = age;
  return info;
}

std::string connectFailure(const RelayContext& ctx, int res) {
  if (res != -ECANCELED) return std::strerror(-res);
  bump(ctx.counters.connect_timeouts);
  return "timed out after " + std::to_string(ctx.connect_timeout.count()) + " ms";
}

}  // namespace nodemesh::tunnel
