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
#
# clang-tidy result cache (clang-format always checks every file; it takes seconds). A unit whose
# clang-tidy inputs are byte-identical to an earlier run that was clean is skipped, the way
# ccache skips a compile: the key is the sha256 of clang-tidy's version and binaries, the
# .clang-tidy/.clang-format files, the arguments below, the unit's compile_commands.json entry,
# its `clang -E` output (line markers kept) and the content of every file it includes. Editing a
# header re-checks every unit that includes it. Only clean results are stored (one small
# marker file per key); a unit with a finding is checked again on every run. Entries unused for
# 30 days are deleted. It prints "clang-tidy: N units (M cached, K checked)".
# NODEMESH_TIDY_CACHE  the cache directory (default: ~/.cache/nodemesh-clang-tidy);
#                      NODEMESH_TIDY_CACHE=off checks every unit and neither reads nor writes it.
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
dirs=(common model policy identity hbone io hbone_io config xds cni telemetry k8s waypoint tunnel agent cli sim tests bench fuzz)

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

# --- clang-tidy result cache ---------------------------------------------------------------------
# A unit is skipped when everything clang-tidy reads for it is byte-identical to an earlier run
# that was clean (see the header). The key is the sha256 of:
#   base: clang-tidy's --version, path, size and mtime and those of the libraries it loads
#         (a package upgrade changes them); the same for the clang that preprocesses; the
#         arguments lint.sh passes (tidy_args); every .clang-tidy and .clang-format in this
#         checkout and in the directories above it, with their paths.
#   unit: its compile_commands.json entries (directory, command, file), verbatim; the output of
#         `clang -E` with the entry's flags (line markers kept: the paths of every header and
#         which one an #include found); and the path and content of every file that the -MD
#         dependency list names (the source and all headers, system ones too), so that comments
#         such as NOLINT, which -E drops, count as well.
# Only a run that exits 0 and prints no warning or error writes the key's marker file; a unit
# whose key cannot be computed (clang -E fails, say) is simply checked.
cache_dir=${NODEMESH_TIDY_CACHE:-${HOME:-/nonexistent}/.cache/nodemesh-clang-tidy}
clang_cpp=
if [ "$cache_dir" = off ]; then
  cache_dir=
else
  # The clang installed next to clang-tidy (same version, same builtin headers), else clang-14.
  tidy_real=$(readlink -f "$(command -v "$clang_tidy")")
  if [ -x "$(dirname "$tidy_real")/clang" ]; then
    clang_cpp=$(dirname "$tidy_real")/clang
  else
    clang_cpp=$(pick clang)
  fi
  if [ -z "$clang_cpp" ] || ! mkdir -p "$cache_dir" 2>/dev/null || [ ! -w "$cache_dir" ]; then
    echo "clang-tidy: result cache disabled (no clang to preprocess with, or $cache_dir is not" \
         "writable)" >&2
    cache_dir=
  else
    # Entries not used for 30 days go (a hit refreshes its marker's mtime).
    find "$cache_dir" -type f -mtime +30 -delete 2>/dev/null || true
    identity() {  # the binary and every shared library it loads: path, size, mtime
      local real
      real=$(readlink -f "$(command -v "$1")")
      { echo "$real"; ldd "$real" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'; } |
        while read -r f; do stat -L -c '%n %s %Y' "$f"; done
    }
    configs=()
    mapfile -t configs < <(find "$root" -name .git -prune -o \
                             \( -name .clang-tidy -o -name .clang-format \) -type f -print | sort)
    d=$(dirname "$root")
    while :; do
      for f in "$d/.clang-tidy" "$d/.clang-format"; do [ -f "$f" ] && configs+=("$f"); done
      [ "$d" = / ] && break
      d=$(dirname "$d")
    done
    base_key=$({
      echo "nodemesh lint.sh tidy cache v1"
      "$clang_tidy" --version; identity "$clang_tidy"
      "$clang_cpp" --version; identity "$clang_cpp"
      printf 'arg %s\0' "${tidy_args[@]}"
      for f in "${configs[@]}"; do printf 'config %s\0' "$f"; cat "$f"; printf '\0'; done
    } | sha256sum | cut -c1-64)
    # The compile_commands.json entries of each unit, one file per unit (clang-tidy checks a file
    # once per entry, so a file listed twice gets both). CMake writes one key per line.
    mkdir "$logs/entries"
    awk -v dir="$logs/entries" '
      /^ *"directory": / { d = $0 } /^ *"command": / { c = $0 } /^ *"file": / { f = $0 }
      /^ *"arguments": / { a = 1 }
      /^ *}/ { if (f != "") {
                 p = f; sub(/^ *"file": "/, "", p); sub(/",?$/, "", p); gsub(/\//, "_", p)
                 if (a || c == "") print "unusable" >> (dir "/" p)  # no key: always checked
                 else { print d >> (dir "/" p); print c >> (dir "/" p); print f >> (dir "/" p) }
                 close(dir "/" p)
               }
               d = c = f = ""; a = 0 }' "$build_dir/compile_commands.json"
  fi
fi
export cache_dir clang_cpp base_key
echo "clang-tidy: result cache ${cache_dir:-off}"

# Prints the unit's cache key, or fails. Runs in the worker (bash -c) below.
tidy_key() {
  local unit=$1 name entries line dir cmd arg skip tmp
  shift
  name=$(printf '%s' "$unit" | tr / _)
  entries="$logs/entries/$name"
  [ -f "$entries" ] && ! grep -q -x unusable "$entries" || return 1
  # clang-tidy's own --extra-arg(-before) flags go to clang too (-Wno-unknown-warning-option).
  local before=() after=()
  for arg in "$@"; do
    case $arg in
      --extra-arg-before=*) before+=("${arg#--extra-arg-before=}") ;;
      --extra-arg=*) after+=("${arg#--extra-arg=}") ;;
    esac
  done
  tmp=$(mktemp -d "$logs/key.XXXXXX")
  {
    echo "$base_key"
    cat "$entries"
    while IFS= read -r line; do
      case $line in
        *'"directory": "'*) dir=${line#*\"directory\": \"}; dir=${dir%\",}; dir=${dir%\"} ;;
        *'"command": "'*)
          cmd=${line#*\"command\": \"}; cmd=${cmd%\",}; cmd=${cmd%\"}
          # JSON string -> shell command line -> words, split the way a shell (and clang's
          # compilation database) would, without expanding anything.
          cmd=$(printf '%s' "$cmd" | sed -e 's/\\\\/\x01/g' -e 's/\\"/"/g' -e 's/\x01/\\/g')
          local words=() args=()
          printf '%s' "$cmd" | xargs printf '%s\0' >"$tmp/words" || return 1
          mapfile -d '' words <"$tmp/words"
          [ "${#words[@]}" -gt 1 ] || return 1
          # Drop the compiler, -c, the output and dependency-file options, as clang's tooling
          # does before clang-tidy parses; -E, -MD and -o below replace them.
          skip=0
          for arg in "${words[@]:1}"; do
            if [ "$skip" = 1 ]; then skip=0; continue; fi
            case $arg in
              -o|-MF|-MT|-MQ) skip=1 ;;
              -c|-M|-MM|-MD|-MMD|-MP|-MG|-o?*|-MF?*|-MT?*|-MQ?*) ;;
              *) args+=("$arg") ;;
            esac
          done
          printf 'preprocessed\0'
          (cd "$dir" &&
             "$clang_cpp" --driver-mode=g++ "${before[@]}" "${args[@]}" "${after[@]}" \
               -E -MD -MF "$tmp/deps" -o - 2>"$tmp/err") || return 1
          # The dependency list: "out: a b \" lines; a space in a path is written "\ ".
          printf 'dependencies\0'
          (cd "$dir" &&
             sed -e 's/\\ /\x01/g' -e 's/\\$//' -e '1s/^[^:]*://' "$tmp/deps" |
               tr ' ' '\n' | grep -v '^$' | tr '\n\001' '\0 ' | xargs -0 -r sha256sum --) ||
            return 1
          ;;
      esac
    done < "$entries"
  } | sha256sum | cut -c1-64
  local rc=("${PIPESTATUS[@]}")
  rm -rf "$tmp"
  [ "${rc[0]}" = 0 ] && [ "${rc[1]}" = 0 ]
}
export -f tidy_key

# One log per unit, printed after all finish, so parallel output does not interleave.
# (run-clang-tidy-14 would do the same job, but it needs python3, prints every invocation and
# selects files only by a positive regex.)
# xargs appends the unit after the clang-tidy arguments.
printf '%s\0' "${units[@]}" | xargs -0 -r -P "$jobs" -n 1 bash -c '
  set -o pipefail
  unit=${!#}
  log="$logs/$(printf "%s" "$unit" | tr / _).log"
  key= marker=
  if [ -n "$cache_dir" ] && key=$(tidy_key "$unit" "${@:1:$#-1}") && [ "${#key}" = 64 ]; then
    marker="$cache_dir/${key:0:2}/$key"
    if [ -f "$marker" ]; then
      touch "$marker"; : >"$log.cached"; exit 0
    fi
  fi
  if "$clang_tidy" "${@:1:$#-1}" "$unit" >"$log" 2>&1; then
    # Clean: exit status 0 and not one diagnostic. Written atomically (other runs may read it).
    if [ -n "$marker" ] && ! grep -q -E "(warning|error): " "$log"; then
      mkdir -p "${marker%/*}" && printf "%s\n" "$unit" >"$marker.$$" && mv "$marker.$$" "$marker"
    fi
  else
    echo "clang-tidy exited with status $? on $unit" >>"$log"; mv "$log" "$log.failed"
  fi
  exit 0
' _ "${tidy_args[@]}"
cached=0
for f in "$logs"/*.cached; do [ -e "$f" ] && cached=$((cached + 1)); done
echo "clang-tidy: ${#units[@]} units ($cached cached, $((${#units[@]} - cached)) checked)"
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
