#!/usr/bin/env bash
# Instructions per request in the master (front), under callgrind: hello world, 2
# workers, one front thread, N keep-alive requests on 8 connections; the master's
# total instructions (start-up included, measured once without requests and
# subtracted) divided by N, and the top functions. Repeatable on a noisy machine.
#   bash benches/profile/master_callgrind.sh [N] [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${1:-20000}
out=${2:-$root/target/callgrind}
mkdir -p "$out"
venv=${BENCH_VENV:-/tmp/benchvenv}
port=8199
run() {  # run COUNT FILE: the master under callgrind serving COUNT requests
  VIRTUAL_ENV=$venv valgrind --tool=callgrind --callgrind-out-file="$2" \
    "$root/target/release/ferricorn" -b 127.0.0.1:$port -w 2 --front-threads 1 \
    --chdir "$root/benches/harness/apps" hello:application > "$out/server.log" 2>&1 &
  local pid=$!
  until grep -q "Ready" "$out/server.log"; do sleep 0.2; done
  if [ "$1" -gt 0 ]; then
    python3 "$root/benches/profile/fixed_requests.py" 127.0.0.1 $port / "$1" 8
  fi
  kill -TERM $pid; wait $pid || true
}
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; }
run 0 "$out/idle.out"
run "$n" "$out/load.out"
idle=$(total "$out/idle.out"); load=$(total "$out/load.out")
echo "master instructions: idle run $idle, with $n requests $load"
echo "per request: $(( (load - idle) / n ))"
callgrind_annotate --inclusive=no "$out/load.out" 2>/dev/null | sed -n '1,45p' > "$out/top.txt"
echo "top functions (self): $out/top.txt"
