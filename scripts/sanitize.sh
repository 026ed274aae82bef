#!/usr/bin/env bash
# The sanitizer stage of CI (.ci/run), runnable on its own (docs/fuzzing.md):
#  1. configures and builds build-asan/ with clang: ASan+UBSan (leak detection on) and libFuzzer
#     instrumentation on every target (-DNODEMESH_FUZZ=ON), only what this stage runs;
#  2. runs the unit tests under ASan+UBSan: any report, a leak included, fails;
#  3. runs a subset of the privileged e2e tests with the sanitized agent, waypoint and CNI
#     plugin (the e2e binary starts the binaries of its own build directory): every sanitizer
#     report of any process, children included, is written to a log file and fails the stage;
#  4. runs every fuzz target for NODEMESH_SANITIZE_FUZZ_SECONDS (default 20) on its seeds.
# Needs root for step 3 (NODEMESH_REQUIRE_PRIVILEGED=1 makes a skip a failure, as in CI).
#
#   scripts/sanitize.sh                   everything
#   scripts/sanitize.sh --configure-only  configure build-asan/ and stop (scripts/fuzz.sh uses it)
# Environment: NODEMESH_ASAN_BUILD_DIR (default build-asan), NODEMESH_SANITIZE_FUZZ_SECONDS,
# NODEMESH_SANITIZE_E2E_FILTER (a --gtest_filter replacing the default subset below).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${NODEMESH_ASAN_BUILD_DIR:-build-asan}

# -O1 with line tables only: sanitizer stacks keep file:line at less compile time than -O2 -g.
# No -DNDEBUG: assertions stay on, the fuzzers should trip them.
configure() {
  CC=clang CXX=clang++ \
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
      -DNODEMESH_FUZZ=ON -DNODEMESH_SANITIZE=address,undefined -DNODEMESH_WERROR=ON >/dev/null
}
configure
if [ "${1:-}" = --configure-only ]; then
  exit 0
fi

# The e2e subset: the agent's HBONE path (capture, mTLS, policy, hostile HTTP/2 and TLS input)
# and the waypoint's HTTP/1.1 and HTTP/2 routing, JWT and authorization: ten tests; the
# full suite runs unsanitized in scripts/test.sh.
e2e_filter=${NODEMESH_SANITIZE_E2E_FILTER:-}
if [ -z "$e2e_filter" ]; then
  e2e_tests=(
    CaptureTest.PodToPodAcrossNodesOverHboneIsIntactAndAuthenticated
    AuthorizationTest.UnlistedMeshIdentityGets401
    HboneSecurityTest.TlsGarbageIsClosedWithoutHarm
    HboneSecurityTest.Http2FramesOutOfOrderEndTheConnection
    HboneSecurityTest.NonConnectRequestIsAnswered400
    HboneSecurityTest.IndependentHttp2ClientInteroperates
    WaypointRoutesTest.HeaderMatch
    WaypointH2Test.Http2RequestsAreRoutedBalancedPerRequestAndMultiplexed
    WaypointJwtTest.ForgedAndAlgNoneTokensAreAnswered401
    WaypointL7AuthzTest.GetAllowedPostDeniedOnTheSamePath
  )
  e2e_filter=$(IFS=:; echo "${e2e_tests[*]}")
fi

start=$(date +%s)
ninja -C "$build_dir" nodemesh_unit_tests nodemesh_e2e_tests fuzzers
build_end=$(date +%s)
echo "sanitize.sh: build-asan built in $((build_end - start)) s"

# Reports go to files (log_path), so that those of the agents and waypoints the e2e tests start
# are seen too; any file there fails the stage.
reports=$(mktemp -d /tmp/nodemesh-sanitize.XXXXXX)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
status=0
check_reports() {  # $1: the step's name
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitize.sh: $1: sanitizer reports:" >&2
    for f in "$reports"/*; do echo "--- $f" >&2; cat "$f" >&2; done
    status=1
    rm -f "$reports"/*
  fi
}

unit_rc=0
"$build_dir/bin/nodemesh_unit_tests" --gtest_brief=1 || unit_rc=$?
check_reports "unit tests"
[ "$unit_rc" -eq 0 ] || { echo "sanitize.sh: unit tests FAILED (exit $unit_rc)" >&2; status=1; }
unit_end=$(date +%s)
echo "sanitize.sh: unit tests under ASan+UBSan in $((unit_end - build_end)) s"

e2e_rc=0
"$build_dir/bin/nodemesh_e2e_tests" --gtest_filter="$e2e_filter" --gtest_brief=1 || e2e_rc=$?
check_reports "e2e tests"
[ "$e2e_rc" -eq 0 ] || { echo "sanitize.sh: e2e tests FAILED (exit $e2e_rc)" >&2; status=1; }
e2e_end=$(date +%s)
echo "sanitize.sh: e2e subset under ASan+UBSan in $((e2e_end - unit_end)) s"

# The fuzzers report on their own output (scripts/fuzz.sh), not in files.
unset ASAN_OPTIONS UBSAN_OPTIONS
fuzz_rc=0
NODEMESH_FUZZ_BUILD_DIR="$build_dir" NODEMESH_FUZZ_FRESH=1 \
  ./scripts/fuzz.sh all "${NODEMESH_SANITIZE_FUZZ_SECONDS:-20}" || fuzz_rc=$?
[ "$fuzz_rc" -eq 0 ] || { echo "sanitize.sh: fuzzing FAILED" >&2; status=1; }
fuzz_end=$(date +%s)
echo "sanitize.sh: fuzz targets in $((fuzz_end - e2e_end)) s"

echo "sanitize.sh: build $((build_end - start)) s, unit $((unit_end - build_end)) s," \
     "e2e $((e2e_end - unit_end)) s, fuzz $((fuzz_end - e2e_end)) s," \
     "total $((fuzz_end - start)) s: $([ "$status" -eq 0 ] && echo OK || echo FAILED)"
exit "$status"
