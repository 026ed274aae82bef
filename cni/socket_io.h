#pragma once

// Deadline-bound I/O on a non-blocking stream socket, for the one-line messages of protocol.h.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nodemesh::cni {

using Deadline = std::chrono::steady_clock::time_point;

// Writes all bytes or fails (ETIMEDOUT at the deadline).
Status writeAll(int fd, std::string_view bytes, Deadline deadline);

// Reads up to and including the first '\n' and returns the line without it. Fails with
// ETIMEDOUT at the deadline, EMSGSIZE past max_bytes, and ECONNRESET at end of stream before a
// '\n'. Bytes after the '\n' are not expected (one message per connection) and are dropped.
Result<std::string> readLine(int fd, size_t max_bytes, Deadline deadline);

}  // namespace nodemesh::cni
