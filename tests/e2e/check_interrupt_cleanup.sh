#!/usr/bin/env bash
# ctest interrupt_cleanup: Ctrl-C (SIGINT) on the demo and on the end-to-end tests, and SIGTERM on
# the benchmark, while their simulated cluster is up with agents running, must leave nothing of
# that cluster behind: no network namespace, cgroup, bpffs directory, work directory, handoff
# socket or process (sim/interrupt.h). Without the cleanup they stayed until the next run swept
# them.
#
#   tests/e2e/check_interrupt_cleanup.sh BIN_DIR OUT_DIR
set -uo pipefail
bin=${1:?usage: check_interrupt_cleanup.sh BIN_DIR OUT_DIR}
out=${2:?usage: check_interrupt_cleanup.sh BIN_DIR OUT_DIR}
mkdir -p "$out"
cgroup2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
tmp=${TMPDIR:-/tmp}

# What is left of the clusters of pid $1 (their names all start with nmt<pid>x).
leftovers() {
  local p="nmt$1x"
  ls -d /var/run/netns/"$p"* /sys/fs/bpf/"$p"* "$tmp/$p"* /run/nodemesh/sys-fs-bpf-"$p"* 2>/dev/null
  [ -n "$cgroup2" ] && ls -d "$cgroup2/$p"* 2>/dev/null
  pgrep -af -- "$p" | grep -v -e check_interrupt_cleanup -e pgrep
  return 0
}

# check NAME SIGNAL COMMAND...: starts COMMAND, waits until its cluster has a node and an agent
# runs, sends SIGNAL, and checks the exit status (128 + the signal) and that nothing is left.
# With READER_GONE=1, COMMAND writes into a pipe whose reader is gone when the signal comes, as
# under ctest or `| tee`, which stop on the same Ctrl-C: writing its last words must not kill
# the program (SIGPIPE) before it starts the sweeper.
check() {
  local name=$1 sig=$2 reader=
  shift 2
  local sink="$out/$name.log"
  if [ "${READER_GONE:-0}" = 1 ]; then
    sink="$out/$name.fifo"
    rm -f "$sink"
    mkfifo "$sink"
    cat "$sink" >"$out/$name.log" &
    reader=$!
  fi
  # A background job of a non-interactive shell starts with SIGINT ignored, and the programs
  # leave an ignored signal ignored: restore the terminal's defaults.
  env --default-signal=INT,TERM,HUP "$@" >"$sink" 2>&1 &
  local pid=$! up=0
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if ls /var/run/netns/"nmt${pid}x"*-n-node1 >/dev/null 2>&1 &&
      pgrep -P "$pid" -x nodemesh-agent >/dev/null; then
      up=1
      break
    fi
    sleep 0.1
  done
  if [ "$up" -ne 1 ]; then
    wait "$pid"
    local status=$?
    if [ "$status" -eq 77 ]; then
      tail -n 5 "$out/$name.log"
      exit 77
    fi
    tail -n 30 "$out/$name.log"
    echo "FAIL: $name: no cluster with an agent within 60 s (exit $status)" >&2
    exit 1
  fi
  sleep 1
  if [ -n "$reader" ]; then
    kill -9 "$reader"
    wait "$reader" 2>/dev/null
  fi
  kill -s "$sig" "$pid"
  wait "$pid"
  local status=$? want=$((128 + $(kill -l "$sig")))
  if [ "$status" -ne "$want" ]; then
    tail -n 30 "$out/$name.log"
    echo "FAIL: $name exited $status after SIG$sig, expected $want" >&2
    exit 1
  fi
  local left
  for _ in $(seq 300); do
    left=$(leftovers "$pid")
    [ -z "$left" ] && break
    sleep 0.1
  done
  if [ -n "$left" ]; then
    tail -n 30 "$out/$name.log"
    echo "FAIL: $name: left behind 30 s after SIG$sig:" >&2
    echo "$left" >&2
    exit 1
  fi
  # (With the reader gone, nobody hears it say so.)
  if [ -z "$reader" ] && ! grep -q "cleaned up after pid $pid" "$out/$name.log"; then
    tail -n 30 "$out/$name.log"
    echo "FAIL: $name: the cleanup did not say it finished" >&2
    exit 1
  fi
  echo "ok: $name: SIG$sig, exit $status, nothing left"
}

check demo INT "$bin/nodemesh-demo"
# The soak test runs 30 s; it is interrupted a second after its cluster has an agent.
check e2e INT "$bin/nodemesh_e2e_tests" --gtest_filter='SoakTest.*'
READER_GONE=1 check e2e-reader-gone INT "$bin/nodemesh_e2e_tests" --gtest_filter='SoakTest.*'
check bench TERM "$bin/nodemesh-bench" --quick --modes nodemesh --scenarios throughput \
  --out "$out/bench"
