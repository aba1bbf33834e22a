#!/usr/bin/env bash
# Where a Django request's CPU goes: the harness's Django view under ferricorn
# (2 workers, defaults), wrk -t1 -c64 for 10 s; CPU time of the master and of the
# workers from /proc (utime + stime), per request. Then the view alone: the app
# called in a loop in one process (app_floor.py), the floor no server goes under.
#   bash benches/profile/cpu_split.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${BENCH_VENV:-/tmp/benchvenv}
harness=${HARNESS:-/tmp/ferricorn-bench-harness}
site=$harness/apps/djsite
port=8198
log=$(mktemp)
VIRTUAL_ENV=$venv "$root/target/release/ferricorn" -b 127.0.0.1:$port -w 2 --chdir "$site" \
  --static "/static/=$site/staticfiles" djsite.wsgi:application > "$log" 2>&1 &
master=$!
until grep -q "Ready" "$log"; do sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
workers=$(cat /proc/$master/task/*/children)
wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" > /dev/null
m0=$(ticks $master); w0=0; for w in $workers; do w0=$((w0 + $(ticks $w))); done
requests=$(wrk -t1 -c64 -d10s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
m1=$(ticks $master); w1=0; for w in $workers; do w1=$((w1 + $(ticks $w))); done
kill -TERM $master; wait $master || true
hz=$(getconf CLK_TCK)
echo "requests: $requests"
echo "master µs/request: $(( (m1 - m0) * 1000000 / hz / requests ))"
echo "workers µs/request: $(( (w1 - w0) * 1000000 / hz / requests ))"
(cd "$site" && "$venv/bin/python" "$root/benches/profile/app_floor.py" 20000)
