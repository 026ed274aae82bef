#!/usr/bin/env bash
# Checks the C++ code the way CI does: clang-format (.clang-format) on every source and header,
# then clang-tidy (.clang-tidy) on every project .cc in the compilation database, in parallel.
# Exits non-zero on any finding of either.
#
#   scripts/lint.sh [build_dir]      build_dir defaults to build/
#
# Needs a configured and built tree (`scripts/build.sh`, or `ninja -C <build_dir>`): clang-tidy
# reads <build_dir>/compile_commands.json, and the agent includes the generated BPF skeletons
# (<build_dir>/bpf/skel/*.skel.h).
# Environment: LINT_JOBS (default: nproc), CLANG_FORMAT / CLANG_TIDY (default: the -14 binaries,
# the versions Debian 12 ships and CI uses; formatting differs between clang-format versions).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)

build_dir=${1:-build}
if [ ! -f "$build_dir/compile_commands.json" ]; then
  echo "lint.sh: $build_dir/compile_commands.json not found; run scripts/build.sh first" >&2
  exit 2
fi
build_dir=$(cd "$build_dir" && pwd -P)
if ! compgen -G "$build_dir/bpf/skel/*.skel.h" >/dev/null; then
  echo "lint.sh: no BPF skeletons in $build_dir/bpf/skel; run ninja -C $build_dir first" >&2
  exit 2
fi

pick() { command -v "$1-14" || command -v "$1" || true; }
clang_format=${CLANG_FORMAT:-$(pick clang-format)}
clang_tidy=${CLANG_TIDY:-$(pick clang-tidy)}
for tool in "$clang_format" "$clang_tidy"; do
  if [ -z "$tool" ] || ! command -v "$tool" >/dev/null; then
    echo "lint.sh: clang-format/clang-tidy not found (scripts/install-deps.sh installs them)" >&2
    exit 2
  fi
done
jobs=${LINT_JOBS:-$(nproc)}

# Directories with our C++. bpf/ is kernel C and has its own rules (bpf/include/capture_abi.h is
# shared with C++ but keeps the kernel's snake_case nm_* names).
dirs=(common model policy identity hbone io hbone_io config cni telemetry k8s waypoint tunnel agent cli sim tests bench)

start=$(date +%s)
status=0

# --- clang-format ------------------------------------------------------------------------------
# Tracked and untracked-but-not-ignored files; a plain find when this is not a git checkout.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- "${dirs[@]}" |
                         grep -E '\.(cc|h)$' || true)
else
  mapfile -t sources < <(find "${dirs[@]}" -type f \( -name '*.cc' -o -name '*.h' \) 2>/dev/null)
fi
# The BPF programs and their headers too (bpf/.clang-format: kernel pointer style).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t -O "${#sources[@]}" sources < <(git ls-files --cached --others --exclude-standard \
                                             -- bpf | grep -E '\.(c|h)$' || true)
else
  mapfile -t -O "${#sources[@]}" sources < <(find bpf -type f \( -name '*.c' -o -name '*.h' \))
fi
existing=()
for f in "${sources[@]}"; do [ -f "$f" ] && existing+=("$f"); done  # skip deleted, unstaged

echo "clang-format: ${#existing[@]} files ($("$clang_format" --version | sed 's/.*version //'))"
if [ "${#existing[@]}" -gt 0 ] &&
   ! printf '%s\0' "${existing[@]}" | xargs -0 "$clang_format" --dry-run -Werror; then
  echo "clang-format: FAILED (fix with: $clang_format -i <files>)" >&2
  status=1
fi
format_end=$(date +%s)

# --- clang-tidy --------------------------------------------------------------------------------
# Every project translation unit in the compilation database, nothing generated under the build
# directory. CMake writes one `"file": "<absolute path>",` line per entry.
dirs_re=$(IFS='|'; echo "${dirs[*]}")
root_re=$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|/]/\\&/g')
mapfile -t units < <(sed -n 's/^ *"file": "\(.*\)",\{0,1\}$/\1/p' "$build_dir/compile_commands.json" |
                     grep -E "^$root_re/($dirs_re)/.*\.cc$" | grep -v -F "$build_dir/" | sort -u)

# Flags added to the compile commands, which were written for GCC 12:
#  -Wno-unknown-warning-option  the commands carry GCC-only -Wno-maybe-uninitialized and
#                               -Wno-dangling-pointer; with -Werror clang rejects them.
# Nothing else is needed: clang 14 parses GCC 12's libstdc++ in C++20 mode (the -std=c++20 comes
# from the compile command) without errors.
# --header-filter narrows .clang-tidy's HeaderFilterRegex to our directories under this
# checkout's root, so that a root path such as /src/agent/nodemesh cannot make
# bpf/include/capture_abi.h or <build>/... count as ours.
tidy_args=(-p "$build_dir" --quiet --extra-arg=-Wno-unknown-warning-option
           "--header-filter=^$root_re/($dirs_re)/")

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
export clang_tidy logs
echo "clang-tidy: ${#units[@]} translation units, $jobs jobs ($("$clang_tidy" --version |
      sed -n 's/.*LLVM version //p'))"
# One log per unit, printed after all finish, so parallel output does not interleave.
# (run-clang-tidy-14 would do the same job, but it needs python3, prints every invocation and
# selects files only by a positive regex.)
# xargs appends the unit after the clang-tidy arguments.
printf '%s\0' "${units[@]}" | xargs -0 -r -P "$jobs" -n 1 bash -c '
  unit=${!#}
  log="$logs/$(printf "%s" "$unit" | tr / _).log"
  "$clang_tidy" "${@:1:$#-1}" "$unit" >"$log" 2>&1 ||
    { echo "clang-tidy exited with status $? on $unit" >>"$log"; mv "$log" "$log.failed"; }
' _ "${tidy_args[@]}"
failed=0
for log in "$logs"/*.failed; do
  [ -e "$log" ] || continue
  failed=$((failed + 1))
  # Drop clang-tidy's "N warnings generated" / "Suppressed ..." chatter.
  grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Found compiler error' "$log" || true
done
tidy_end=$(date +%s)
if [ "$failed" -gt 0 ]; then
  echo "clang-tidy: FAILED in $failed of ${#units[@]} translation units" >&2
  status=1
fi

echo "lint.sh: clang-format $((format_end - start))s, clang-tidy $((tidy_end - format_end))s," \
     "total $((tidy_end - start))s: $([ "$status" -eq 0 ] && echo OK || echo FAILED)"
exit "$status"
