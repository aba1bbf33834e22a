#!/usr/bin/env bash
# per-thread master CPU
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
LOG="${TMPDIR:-/tmp}/ferricorn-split.log"
cd "$ROOT/benches/harness/apps"
"${BIN:-$ROOT/target/release/ferricorn}" -b 127.0.0.1:8101 -w 2 "$@" hello:app >"$LOG" 2>&1 &
sleep 1.5; M=$(pgrep -f "b 127.0.0.1:8101 -w 2" | head -1); W=$(pgrep -P $M | tr '\n' ' ')
wrk -t1 -c64 -d2s http://127.0.0.1:8101/ >/dev/null
snap() { for t in /proc/$M/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done; }
a=$(snap); i0=$(awk 'NR==1{print $5}' /proc/stat)
out=$(wrk -t1 -c64 -d${DUR:-6}s --latency http://127.0.0.1:8101/)
b=$(snap); i1=$(awk 'NR==1{print $5}' /proc/stat)
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
echo "rps $rps idle_ticks $((i1-i0)) (of $((${DUR:-6}*200)))"
paste <(echo "$a") <(echo "$b") | awk '$4-$2>0 {print "  ", $1, $4-$2}'
kill $M; sleep 1
