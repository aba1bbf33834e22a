#!/usr/bin/env bash
# Profile of the hello path (issue 7, item 4): perf on the master, then on one worker,
# each under its own wrk -t1 -c64 -d10s; plus a plain run that reads CPU time per
# process from /proc to split server CPU µs per request between master and workers.
# Usage: bash benches/results/2026-11-25-profile/profile.sh [OUTDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
OUT="${1:-$(dirname "$0")}"
BIN="${BIN:-$ROOT/target/release/ferricorn}"
PORT=8101
URL="http://127.0.0.1:$PORT/"
TCK=$(getconf CLK_TCK)

"$BIN" -w 2 -b 127.0.0.1:$PORT --chdir "$ROOT/benches/harness/apps" hello:app >"$OUT/ferricorn.log" 2>&1 &
MASTER=$!
trap 'kill $MASTER 2>/dev/null; wait $MASTER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "$URL" >/dev/null && break; sleep 0.1; done
WORKERS=$(pgrep -P $MASTER | tr '\n' ' ')
echo "master $MASTER workers $WORKERS" | tee "$OUT/pids.txt"
wrk -t1 -c64 -d3s "$URL" >/dev/null   # warm-up

cpu() { awk '{print $14+$15}' /proc/$1/stat; }   # utime+stime in ticks

# 1. Plain run: req/s and CPU ticks per process.
m0=$(cpu $MASTER); w0=0; for w in $WORKERS; do w0=$((w0 + $(cpu $w))); done
wrk -t1 -c64 -d10s --latency "$URL" >"$OUT/wrk-plain.txt"
m1=$(cpu $MASTER); w1=0; for w in $WORKERS; do w1=$((w1 + $(cpu $w))); done
reqs=$(awk '/requests in/{print $1}' "$OUT/wrk-plain.txt")
python3 - "$reqs" "$((m1 - m0))" "$((w1 - w0))" "$TCK" <<'PY' | tee "$OUT/cpu-split.txt"
import sys
reqs, m, w, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
us = lambda t: t / tck * 1e6 / reqs
print(f"requests {reqs}  ({reqs/10:.0f} req/s)")
print(f"master  CPU {m/tck:.2f} s = {us(m):.1f} us/req")
print(f"workers CPU {w/tck:.2f} s = {us(w):.1f} us/req (both workers)")
print(f"server  CPU {(m+w)/tck:.2f} s = {us(m+w):.1f} us/req")
PY

# 2. perf on the master, then on the first worker, each during its own wrk run.
set +o pipefail   # perf report | head closes the pipe early
W1=${WORKERS%% *}
for who in master:$MASTER worker:$W1; do
  name=${who%%:*}; pid=${who##*:}
  wrk -t1 -c64 -d10s --latency "$URL" >"$OUT/wrk-perf-$name.txt" &
  WRK=$!
  sleep 1
  perf record -F 2000 -g -p "$pid" -o "$OUT/perf-$name.data" -- sleep 8 2>"$OUT/perf-record-$name.txt"
  wait $WRK
  rep() { perf report -i "$OUT/perf-$name.data" --stdio -g none "$@" 2>/dev/null | grep -v '^$' | cut -c1-160 || true; }
  rep --no-children --sort sym | head -60 >"$OUT/top-symbols-$name.txt"
  rep --children --sort sym | head -70 >"$OUT/top-inclusive-$name.txt"
  rep --no-children --sort dso | head -25 >"$OUT/top-dso-$name.txt"
done
