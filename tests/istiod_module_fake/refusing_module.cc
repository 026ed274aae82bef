// A stand-in for an istiod module from another build of nodemesh: it has the entry point, and
// refuses every interface version (tests/unit/agent/istiod_loader_test.cc).

#include "xds/istiod.h"

// NOLINTNEXTLINE(readability-identifier-naming): a C symbol, looked up by this name.
extern "C" __attribute__((visibility("default"))) nodemesh::xds::Istiod* nodemesh_istiod_module(
    int /*abi*/) {
  return nullptr;
}
