#pragma once

// Shared by the libFuzzer targets of fuzz/ (docs/fuzzing.md): quiet logging and the small
// helpers every target needs. A target must be deterministic, leak nothing, and touch no file
// and no socket.

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string_view>

namespace nodemesh::fuzz {

// Turns logging off: a finding should be the only output, and formatting log lines for every
// malformed input would dominate the run time.
inline void quietLogs() {
  spdlog::set_level(spdlog::level::off);
}

inline std::span<const uint8_t> asBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string_view asText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A broken invariant is a finding: abort, so libFuzzer keeps the input.
inline void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace nodemesh::fuzz
