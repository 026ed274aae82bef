#pragma once

// The agent's clock is the project's (common/steady_clock.h): the tunnel, below the agent, uses
// it too (its per-workload connection rate).
#include "common/steady_clock.h"

namespace nodemesh::agent {

using SteadyClock = nodemesh::SteadyClock;
using RealSteadyClock = nodemesh::RealSteadyClock;

}  // namespace nodemesh::agent
