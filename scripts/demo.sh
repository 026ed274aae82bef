#!/usr/bin/env bash
# The main job: installs the dependencies (Debian packages), builds, and runs nodemesh-demo:
# a simulated two-node cluster (network namespaces) with the pods of examples/two-nodes.yaml,
# one nodemesh-agent per node, real traffic between every pair of pods, HTTP routed by a waypoint
# (HTTPRoute weights and a header rule, changed while it runs), a report, and cleanup.
# Run as root. Extra arguments go to nodemesh-demo (see `build/bin/nodemesh-demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
exec "${NODEMESH_BUILD_DIR:-build}/bin/nodemesh-demo" "$@"
