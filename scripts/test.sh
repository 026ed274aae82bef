#!/usr/bin/env bash
# Installs the dependencies, builds, checks formatting and clang-tidy, and runs the whole test
# suite: unit tests and the privileged end-to-end tests (simulated nodes in network
# namespaces). Run as root; without root the e2e tests skip, unless
# NODEMESH_REQUIRE_PRIVILEGED=1 (CI), which turns every skip into a failure.
# Compiler warnings in nodemesh's own code are errors here (NODEMESH_WERROR=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${NODEMESH_BUILD_DIR:-build}
./scripts/install-deps.sh
NODEMESH_WERROR=ON ./scripts/build.sh
./scripts/lint.sh "$build_dir"
# Unit tests two (or nproc) at a time; the e2e tests, marked RUN_SERIAL, one at a time.
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j "$(nproc)"
