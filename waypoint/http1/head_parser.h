#pragma once

// Turns the lines HeadReader collected into a RequestHead or ResponseHead and decides how the
// body is framed. This is where the codec is strict on purpose (RFC 9112 §11.2: a proxy that
// parses differently from the server behind it enables request smuggling), on top of
// http-parser, which checks the request/status line syntax, the method, the target's
// characters and Content-Length (digits, overflow, repetition, with Transfer-Encoding).

#include <optional>
#include <string_view>

#include "waypoint/http1/head_reader.h"
#include "waypoint/http1/message.h"
#include "waypoint/http1/options.h"

namespace nodemesh::waypoint::http1 {

// A complete request head: nullopt and `head`/`info` filled, or why it is refused (400, 501,
// 505, 417; see docs/waypoint.md).
std::optional<Rejection> parseRequestHead(const HeadReader& reader, RequestHead& head,
                                          RequestInfo& info);

// A complete response head to a request with `request_method` (HEAD responses have no body).
// The status of a Rejection is informational (the owner answers its own client with 502).
std::optional<Rejection> parseResponseHead(const HeadReader& reader,
                                           std::string_view request_method, ResponseHead& head,
                                           ResponseInfo& info);

// A complete trailer section (RFC 9112 §7.1.2): the same field rules as a head.
std::optional<Rejection> parseTrailers(const HeadReader& reader, Headers& trailers);

// Whether `s` is a token (RFC 9110 §5.6.2): field names, methods, transfer codings.
bool isToken(std::string_view s);

}  // namespace nodemesh::waypoint::http1
