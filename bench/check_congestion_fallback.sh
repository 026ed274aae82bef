#!/usr/bin/env bash
# ctest bench_congestion_fallback: asks the benchmark for a TCP congestion control no kernel has.
# The run must not fail: the pods keep the host's default, and the report names the algorithm
# the figures used and why it is not the one asked for. The host is only read, never changed.
#
#   bench/check_congestion_fallback.sh OUT_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
out=${1:?usage: check_congestion_fallback.sh OUT_DIR}
bogus=nodemesh-no-such-cc
host_default=$(cat /proc/sys/net/ipv4/tcp_congestion_control)

set +e
"$root/bench/run" --quick --modes direct --scenarios latency --congestion-control "$bogus" \
  --out "$out" >"$out.log" 2>&1
status=$?
set -e
if [ "$status" -eq 77 ]; then
  tail -n 5 "$out.log"
  exit 77
fi
if [ "$status" -ne 0 ]; then
  cat "$out.log"
  echo "FAIL: bench/run exited $status with --congestion-control $bogus" >&2
  exit 1
fi
want="TCP congestion control in the pods: $host_default, the host's default, instead of the $bogus asked for: this kernel has no TCP congestion control named $bogus"
if ! grep -qF "$want" "$out/latest.md"; then
  grep -n "congestion" "$out/latest.md" >&2 || true
  echo "FAIL: the report does not say: $want" >&2
  exit 1
fi
used=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run"]["settings"]["congestion_control"])' "$out/latest.json")
if [ "$used" != "$host_default" ]; then
  echo "FAIL: latest.json says the pods used '$used', the host's default is '$host_default'" >&2
  exit 1
fi
echo "ok: fell back to $host_default and said so"
