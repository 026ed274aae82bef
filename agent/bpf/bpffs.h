#pragma once

#include <string>

#include "common/result.h"

namespace nodemesh::agent {

// Makes sure `dir` exists on a bpffs. When /sys/fs/bpf itself is not a bpffs (some hosts do
// not mount it), mounts one there; when `dir` lies elsewhere on a non-bpffs filesystem, mounts
// a bpffs on `dir`. Returns true when it mounted `dir` itself (the caller unmounts it on
// uninstall), false otherwise.
Result<bool> ensureBpffsDir(const std::string& dir);

bool isBpffs(const std::string& path);

// Removes a directory tree of pins (bpffs supports unlink/rmdir); missing is not an error.
Status removePinTree(const std::string& dir);

}  // namespace nodemesh::agent
