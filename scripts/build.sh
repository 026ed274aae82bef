#!/usr/bin/env bash
# Configures and builds nodemesh into build/ (or $NODEMESH_BUILD_DIR). Binaries land in
# build/bin/. ccache is used when installed (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${NODEMESH_BUILD_DIR:-build}
build_type=${NODEMESH_BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type"
ninja -C "$build_dir"
