#pragma once

// Finds and loads the istiod module (libnodemesh-istiod.so, xds/istiod.h) when the agent needs
// istiod: the agent itself links no gRPC.

#include <string>

#include "common/result.h"
#include "xds/istiod.h"

namespace nodemesh::agent {

inline constexpr const char* kIstiodModuleName = "libnodemesh-istiod.so";

// Where the module is by default: ../lib/nodemesh/ from the directory of the running executable
// (<build>/bin -> <build>/lib/nodemesh; /usr/local/bin -> /usr/local/lib/nodemesh).
Result<std::string> defaultIstiodModulePath();

// dlopen()s `path` (empty: defaultIstiodModulePath()) and returns its Istiod. The module stays
// loaded for the life of the process. Errors name the path and say why: the file is missing or
// not a loadable module (dlerror(), e.g. a missing gRPC library), it has no entry point, or it
// was built against another version of xds/istiod.h.
Result<xds::Istiod*> loadIstiodModule(const std::string& path);

}  // namespace nodemesh::agent
