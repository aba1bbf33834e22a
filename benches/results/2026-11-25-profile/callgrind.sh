#!/usr/bin/env bash
# Instruction counts of the hello path: master and workers under callgrind, collection
# switched on only around a fixed number of requests (CONNS x REQS, keep-alive).
# Usage: bash benches/results/2026-11-25-profile/callgrind.sh [OUTDIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$HERE}"
BIN="${BIN:-$ROOT/target/release/ferricorn}"
PORT=8103 CONNS=${CONNS:-4} REQS=${REQS:-500}
rm -f "$OUT"/callgrind.out.*
valgrind --tool=callgrind --collect-atstart=no --trace-children=${TRACE_CHILDREN:-no} \
  --callgrind-out-file="$OUT/callgrind.out.%p" \
  "$BIN" -w 2 -t 0 -b 127.0.0.1:$PORT --chdir "$ROOT/benches/harness/apps" hello:app \
  >"$OUT/callgrind-ferricorn.log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null; wait $VG 2>/dev/null || true' EXIT
for _ in $(seq 600); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.5; done
python3 "$HERE/fixed_client.py" $PORT 2 100 >/dev/null     # warm-up, not collected
callgrind_control -i on >/dev/null
python3 "$HERE/fixed_client.py" $PORT $CONNS $REQS | tee "$OUT/callgrind-client.txt"
callgrind_control -i off >/dev/null
callgrind_control -d >/dev/null
sleep 1
for f in "$OUT"/callgrind.out.*; do
  callgrind_annotate --inclusive=no "$f" 2>/dev/null | head -45 >"$f.top.txt" || true
done
