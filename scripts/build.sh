#!/usr/bin/env bash
# Configures and builds nodemesh into build/ (or $NODEMESH_BUILD_DIR). Binaries land in
# build/bin/. ccache is used when installed (scripts/install-deps.sh installs it).
# Environment: NODEMESH_BUILD_DIR (default build), NODEMESH_BUILD_TYPE (default RelWithDebInfo),
# NODEMESH_WERROR (ON: warnings in nodemesh's own code are errors, as in scripts/test.sh and CI;
# default OFF, so a newer compiler's new warning does not stop a user's build).
# Arguments, if any, are ninja targets to build instead of everything (for example
# `scripts/build.sh nodemesh-agent nodemeshctl`).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${NODEMESH_BUILD_DIR:-build}
build_type=${NODEMESH_BUILD_TYPE:-RelWithDebInfo}
werror=${NODEMESH_WERROR:-OFF}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DNODEMESH_WERROR="$werror"
ninja -C "$build_dir" "$@"
