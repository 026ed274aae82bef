#pragma once

// Small file helpers shared by the plugin, the state file and the installer.

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "common/result.h"

namespace nodemesh::cni {

// The whole file; an error (with the errno, ENOENT when missing) when it cannot be read or is
// larger than max_bytes (EFBIG).
Result<std::string> readFile(const std::string& path, size_t max_bytes);

// Replaces path with bytes atomically: a temporary file in the same directory, written, fsynced,
// given `mode`, then renamed over path. Readers see the old or the new content, never a mix.
Status writeFileAtomic(const std::string& path, const std::string& bytes, mode_t mode);

}  // namespace nodemesh::cni
