#!/usr/bin/env bash
# split.sh [extra ferricorn args] -> req/s, master and worker CPU us/req
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
LOG="${TMPDIR:-/tmp}/ferricorn-split.log"
cd "$ROOT/benches/harness/apps"
"${BIN:-$ROOT/target/release/ferricorn}" -b 127.0.0.1:8101 -w 2 "$@" hello:app >"$LOG" 2>&1 &
sleep 1.5; M=$(pgrep -f "b 127.0.0.1:8101 -w 2" | head -1); W=$(pgrep -P $M | tr '\n' ' ')
wrk -t1 -c64 -d2s http://127.0.0.1:8101/ >/dev/null
s() { awk '{print $14+$15}' /proc/$1/stat; }
m0=$(s $M); w0=0; for p in $W; do w0=$((w0+$(s $p))); done
out=$(wrk -t1 -c64 -d${DUR:-6}s --latency http://127.0.0.1:8101/)
m1=$(s $M); w1=0; for p in $W; do w1=$((w1+$(s $p))); done
n=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); p99=$(echo "$out" | awk '/ 99%/ {print $2}')
python3 -c "print('rps', $rps, 'p99 $p99', 'master', round(($m1-$m0)*1e4/$n,2), 'workers', round(($w1-$w0)*1e4/$n,2))"
kill $M; sleep 1
