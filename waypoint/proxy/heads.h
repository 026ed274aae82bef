#pragma once

// Between the HTTP/1.1 codec's message heads and the routing engine's neutral heads (names
// lowercased, Host as the authority), so that routes and filters see one shape whatever the
// protocol.

#include "waypoint/http1/message.h"
#include "waypoint/routing/http_head.h"

namespace nodemesh::waypoint {

// `info` gives the authority (Host or the absolute target) and the origin-form path.
RequestHead toRoutingHead(const http1::RequestHead& head, const http1::RequestInfo& info);
// The request to forward after filters: method and path from `routed`, Host from its authority,
// its headers (hop-by-hop fields are the caller's to strip).
http1::RequestHead toHttp1Head(const RequestHead& routed, http1::Version version);

ResponseHead toRoutingHead(const http1::ResponseHead& head);
// `head`'s status and headers replaced by `routed`'s (reason phrase dropped if the status
// changed).
void applyToHttp1(const ResponseHead& routed, http1::ResponseHead& head);

}  // namespace nodemesh::waypoint
