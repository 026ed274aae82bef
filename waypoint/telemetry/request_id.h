#pragma once

// x-request-id, the id Envoy and Istio use to tie a request's log lines together across hops:
// kept when the client sent a sane one, else a new random UUID (version 4), as Envoy makes them.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "waypoint/telemetry/random_bytes.h"

namespace nodemesh::waypoint {

// Longer ids are replaced: the id lands in every log line and upstream request, and a client
// must not make those arbitrarily large.
inline constexpr size_t kMaxRequestIdLength = 128;

// 1 to kMaxRequestIdLength characters, each visible ASCII (0x21-0x7e): no spaces, controls or
// bytes that a log or header could mangle.
bool isSaneRequestId(std::string_view id);

// "xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx" in lowercase hex (RFC 9562 version 4, variant 10).
std::string newRequestId(RandomBytes& random);

// The x-request-id to log and forward: the inbound one when sane, else a new one.
std::string requestIdFor(std::optional<std::string_view> inbound, RandomBytes& random);

}  // namespace nodemesh::waypoint
