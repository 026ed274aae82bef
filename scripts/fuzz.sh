#!/usr/bin/env bash
# Runs one libFuzzer campaign (docs/fuzzing.md), building the fuzz targets first if needed.
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   e.g. scripts/fuzz.sh hbone_server 60
#   scripts/fuzz.sh all SECONDS [libFuzzer flags...]      every target in turn, SECONDS each
#   scripts/fuzz.sh list                                  the target names
#
# TARGET is a name from fuzz/CMakeLists.txt (bin/fuzz_TARGET). The checked-in seeds of
# fuzz/corpus/TARGET/ are copied into a working corpus, $work/TARGET/corpus, which keeps what
# earlier runs found (the seeds in git stay small); crash, leak and timeout inputs land in
# $work/TARGET/artifacts/. Extra flags go to libFuzzer (-runs=10000000, -jobs=..., ...).
# At the end it prints the target's executions, exec/s, coverage (cov: edges, ft: features) and
# corpus size; it exits non-zero when the fuzzer found something.
# Environment: NODEMESH_FUZZ_BUILD_DIR (default build-asan: clang, ASan+UBSan, fuzzer
# instrumentation; configured here when missing), NODEMESH_FUZZ_WORK (default
# $NODEMESH_FUZZ_BUILD_DIR/fuzz-work), NODEMESH_FUZZ_FRESH=1 (start from the seeds only),
# NODEMESH_FUZZ_SKIP_BUILD=1 (run the binaries as they are, e.g. a long campaign while the build
# directory is being rebuilt), NODEMESH_FUZZ_LOG=NAME (the log's file name in $work/TARGET,
# default last-run.log: two runs of one target side by side, one per core, share its corpus —
# libFuzzer reloads the corpus directory every second — but each needs its own log).
# The whole script is one { } block: bash reads it completely before running it, so editing this
# file does not disturb a campaign that is running.
{
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
target=$1
shift

build_dir=${NODEMESH_FUZZ_BUILD_DIR:-build-asan}
mapfile -t all_targets < <(sed -n 's/^nodemesh_fuzzer(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt)
if [ "$target" = list ]; then
  printf '%s\n' "${all_targets[@]}"
  exit 0
fi
[ $# -ge 1 ] || usage
seconds=$1
shift
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS must be a number, got '$seconds'" >&2
  exit 2
fi
if [ "$target" = all ]; then
  targets=("${all_targets[@]}")
else
  if ! printf '%s\n' "${all_targets[@]}" | grep -qx -- "$target"; then
    echo "fuzz.sh: unknown target '$target'; targets: ${all_targets[*]}" >&2
    exit 2
  fi
  targets=("$target")
fi

# The build: the same directory as scripts/sanitize.sh, so one build serves both.
if [ ! -f "$build_dir/build.ninja" ] ||
   ! grep -q '^NODEMESH_FUZZ:BOOL=ON' "$build_dir/CMakeCache.txt" 2>/dev/null; then
  ./scripts/sanitize.sh --configure-only
fi
if [ "${NODEMESH_FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  ninja -C "$build_dir" "${targets[@]/#/fuzz_}" >/dev/null
fi

work_root=${NODEMESH_FUZZ_WORK:-$build_dir/fuzz-work}
# Leaks are findings; UBSan stops at the first report with a stack (the build also has
# -fno-sanitize-recover=all).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
summary=()
for t in "${targets[@]}"; do
  work="$work_root/$t"
  if [ "${NODEMESH_FUZZ_FRESH:-0}" = 1 ]; then rm -rf "$work"; fi
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -n fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
  flags=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
         -artifact_prefix="$work/artifacts/")
  dict=
  case $t in
    hbone_server|hbone_client|http2_server) dict=fuzz/http2.dict ;;
    http1_server) dict=fuzz/http1.dict ;;
  esac
  [ -n "$dict" ] && flags+=(-dict="$dict")
  log="$work/${NODEMESH_FUZZ_LOG:-last-run.log}"
  echo "fuzz.sh: $t for ${seconds}s: $build_dir/bin/fuzz_$t ${flags[*]} $* $work/corpus"
  start=$(date +%s)
  rc=0
  "$build_dir/bin/fuzz_$t" "${flags[@]}" "$@" "$work/corpus" >"$log" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - start))
  # The last status line: "#1234 DONE cov: 567 ft: 890 corp: 12/3456b ... exec/s: 789 ...".
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corpus=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
  line="$t: ${execs:-?} execs in ${elapsed}s (${rate:-?} exec/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corpus:-?}"
  if [ "$rc" -ne 0 ]; then
    status=1
    line+=", FAILED (exit $rc): see $log and $work/artifacts/"
    grep -E -A30 '^==[0-9]+==ERROR|runtime error:|^SUMMARY' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
  fi
  echo "fuzz.sh: $line"
  summary+=("$line")
done
if [ "${#targets[@]}" -gt 1 ]; then
  printf 'fuzz.sh: %s\n' "${summary[@]}"
fi
exit "$status"
}
