#!/usr/bin/env bash
# Context switches and syscalls per request (software counters; no PMU in this VM),
# master and workers separately, over 8 s of wrk -t1 -c64.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT="${1:-$(dirname "$0")}"
BIN="${BIN:-$ROOT/target/release/ferricorn}"
PORT=8104 URL="http://127.0.0.1:8104/"
"$BIN" -w 2 -b 127.0.0.1:$PORT --chdir "$ROOT/benches/harness/apps" hello:app >/dev/null 2>&1 &
MASTER=$!
trap 'kill $MASTER 2>/dev/null; wait $MASTER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$URL" >/dev/null && break; sleep 0.1; done
WORKERS=$(pgrep -P $MASTER | paste -sd,)
wrk -t1 -c64 -d3s "$URL" >/dev/null
wrk -t1 -c64 -d10s "$URL" >"$OUT/wrk-switches.txt" &
WRK=$!
sleep 1
EV=task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter
perf stat -e $EV -p $MASTER -o "$OUT/stat-master.txt" -- sleep 8 &
perf stat -e $EV -p $WORKERS -o "$OUT/stat-workers.txt" -- sleep 8
wait $WRK
