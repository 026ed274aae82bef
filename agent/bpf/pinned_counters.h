#pragma once

// The pinned-counter reader moved to common/bpf_pins.h (nodemeshctl reads the pins too, and
// nothing may include agent/); this name stays for the agent's callers.
#include "common/bpf_pins.h"

namespace nodemesh::agent {

using bpfpins::readPinnedCounters;

}  // namespace nodemesh::agent
