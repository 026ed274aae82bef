#pragma once

// The syntax checks of Gateway API route fields that every config source applies (the local
// file today, a Kubernetes watch later): the CRD's patterns and CEL rules, restated as
// functions. Each returns an error whose message completes "invalid <field>: ...".

#include <chrono>
#include <string_view>

#include "common/result.h"

namespace nodemesh::model {

// RE2 syntax, the dialect nodemesh documents for RegularExpression matches: RE2 runs in time
// linear in the input and without recursion, so a request cannot make a match slow or deep.
Status checkRegex(std::string_view pattern);

// An Exact or PathPrefix value: starts with '/', no "//", "/./", "/../", "%2f", "#", does not
// end in "/." or "/..", only RFC 3986 path characters; at most 1024 characters.
Status checkPathValue(std::string_view path);

// RFC 1123 hostname, lowercase, at most 253 characters, not an IP address. `allow_wildcard`
// allows a leading "*." label (spec.hostnames; not redirect or rewrite hostnames).
Status checkHostname(std::string_view hostname, bool allow_wildcard);

// An HTTP header name (RFC 7230 token); pseudo headers such as ":path" are not allowed.
Status checkHeaderName(std::string_view name);

// SectionName: a DNS-1123 subdomain (rule names, parentRefs[].sectionName).
Status checkSectionName(std::string_view name);

// GRPCMethodMatch service and method names for the Exact type.
Status checkGrpcService(std::string_view service);
Status checkGrpcMethod(std::string_view method);

// Gateway API Duration (GEP-2257): 1 to 4 of <1-5 digits><h|m|s|ms>, such as "1h30m" or
// "500ms"; "0s" is allowed.
Result<std::chrono::milliseconds> parseGatewayDuration(std::string_view text);

// metadata.creationTimestamp: RFC 3339, such as "2024-05-01T10:00:00Z" (Kubernetes writes UTC
// with seconds); fractional seconds and numeric offsets are accepted.
Result<std::chrono::sys_seconds> parseTimestamp(std::string_view text);

}  // namespace nodemesh::model
