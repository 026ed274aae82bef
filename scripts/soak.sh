#!/usr/bin/env bash
# The soak (docs/security.md, "Soak"): both agents of a simulated two-node cluster under mixed
# load (short connections at up to 400/s, paced long transfers, a config change every 5 s,
# 60-second certificates) for SECONDS, sampled for leaks: RSS, open descriptors and CPU time of
# each agent. The test fails on any failed connection, on RSS or descriptors that grew after the
# warm-up, or (runs of 5 minutes or more) on CPU per connection that doubled.
#
#   scripts/soak.sh [SECONDS] [SAMPLE_SECONDS]     default 1800 (30 minutes) and 60
#
# Needs root and a built tree (scripts/build.sh). The samples and the verdict are printed and
# kept in build/soak-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1800}
sample=${2:-60}
build_dir=${NODEMESH_BUILD_DIR:-build}
out="$build_dir/soak-$(date -u +%Y%m%dT%H%M%SZ).txt"
if [ ! -x "$build_dir/bin/nodemesh_e2e_tests" ]; then
  echo "soak.sh: $build_dir/bin/nodemesh_e2e_tests not found; run scripts/build.sh first" >&2
  exit 2
fi
echo "soak.sh: ${seconds} s, a sample every ${sample} s; output in $out"
status=0
NODEMESH_REQUIRE_PRIVILEGED=1 NODEMESH_SOAK_SECONDS="$seconds" \
  NODEMESH_SOAK_SAMPLE_SECONDS="$sample" \
  "$build_dir/bin/nodemesh_e2e_tests" --gtest_filter='SoakTest.*' 2>&1 |
  grep -v -E '^[0-9T:.-]+Z access |^\{"' | tee "$out" || status=$?
grep -q '^\[  PASSED  \] 1 test' "$out" || status=1
exit "$status"
