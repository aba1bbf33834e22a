#!/usr/bin/env bash
# Scaling notes (issue 7 item 5): ferricorn serving the harness's hello app.
#
#   bash benches/scaling/run.sh
#
# One command does all of it:
#   0. waits until no `run.py suite` benchmark runs and the 1-min load average is below
#      MAX_LOAD (polls every 20 s, at most QUIET_WAIT s; then starts anyway and says so);
#   1. cargo build --release --bin ferricorn;
#   2. wrk -t1 -cC -d10s --latency after a 2 s warm-up (the shared harness's
#      `run.py single`: req/s, p50/p99, errors, server CPU µs/request from
#      /proc/<pid>/stat of the master and its workers, peak RSS/PSS of the tree) for
#        -w 1, 2, 4 at 64 connections, and 64, 256, 1024 connections at -w 2;
#   3. 10,000 idle HTTP/1.1 keep-alive connections (idle_conns.py: one GET each, then
#      silent) against `-w 2` with idle.toml ([server] keep_alive = 120, since the
#      default 5 s closes idle connections, and [limits] max_connections = 20000, above
#      the default 10000): the master's RSS before / with them open / after they close
#      (KiB per connection), kernel slab, single-request latency (curl) and a 5 s
#      wrk -c64 run without and with them open;
#   4. writes benches/results/<date>-scaling/: table.md (report.py), results.jsonl (raw
#      run.py lines, wrk output included), idle.json + idle-*.txt (raw), idle.toml,
#      command.txt, machine.txt.
#
# Environment (defaults in brackets):
#   BENCH       the shared harness (run.py, apps/hello.py) [<repo>/benches/harness]
#   BENCH_VENV  the bench venv, exported to ferricorn as VIRTUAL_ENV [<tmp>/benchvenv]
#   PORT        [8121]      DURATION  wrk duration [10s]      ROUNDS  runs per point [1]
#   MAX_LOAD    [1.5]       LOAD_WAIT max seconds to wait for it before each run [180]
#   QUIET_WAIT  max seconds for step 0 [1800]     IDLE_CONNS [10000]
#   BUILD=0     use the existing target/release/ferricorn (e.g. while another benchmark
#               runs it: a rebuild would swap its binary)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/benches/scaling"
bench=$(cd "${BENCH:-$root/benches/harness}" && pwd)
tmp=$(python3 -c 'import tempfile; print(tempfile.gettempdir())')
venv=${BENCH_VENV:-$tmp/benchvenv}
port=${PORT:-8121}
duration=${DURATION:-10s}
rounds=${ROUNDS:-1}
max_load=${MAX_LOAD:-1.5}
load_wait=${LOAD_WAIT:-180}
quiet_wait=${QUIET_WAIT:-1800}
idle_n=${IDLE_CONNS:-10000}
bin="$root/target/release/ferricorn"
url="http://127.0.0.1:$port/"

if [ ! -f "$bench/run.py" ] || [ ! -f "$bench/apps/hello.py" ]; then
  echo "no harness at $bench (set BENCH=)" >&2; exit 1
fi
[ -x "$venv/bin/python" ] || { echo "no venv at $venv: run 'bash $bench/setup.sh' or set BENCH_VENV=" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not found (bash $bench/setup.sh installs it)" >&2; exit 1; }

load1() { cut -d' ' -f1 /proc/loadavg; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
log() { echo "[scaling] $*" >&2; }

# --- 0. wait for a quiet machine --------------------------------------------------
waited=0
while pgrep -f 'run.py suite' >/dev/null || ! below "$(load1)" "$max_load"; do
  if [ "$waited" -ge "$quiet_wait" ]; then
    log "still busy after ${waited}s (load $(load1)); starting anyway"
    break
  fi
  log "waiting: $(pgrep -fc 'run.py suite' || true) suite(s) running, load $(load1) (limit $max_load)"
  sleep 20
  waited=$((waited + 20))
done
quiet_note="waited ${waited}s for a quiet machine; load $(cut -d' ' -f1-3 /proc/loadavg) when starting"
log "$quiet_note"

# --- 1. build ---------------------------------------------------------------------
if [ "${BUILD:-1}" = 1 ]; then
  (cd "$root" && cargo build --release --bin ferricorn)
fi
[ -x "$bin" ] || { echo "no $bin (BUILD=0 needs an existing release build)" >&2; exit 1; }

# Enough descriptors for wrk's 1024 connections and for both ends of the idle ones
# (client and server are separate processes, each needs about idle_n).
need=$((idle_n + 2048))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
    echo "ulimit -Hn is $hard, need $need for IDLE_CONNS=$idle_n" >&2; exit 1
  fi
  ulimit -n "$need"
fi

out="$root/benches/results/$(date +%Y-%m-%d-%H%M)-scaling"
mkdir -p "$out"
printf '%s\n' "cd <repo> && bash benches/scaling/run.sh" \
  "# with PORT=$port DURATION=$duration ROUNDS=$rounds MAX_LOAD=$max_load LOAD_WAIT=$load_wait IDLE_CONNS=$idle_n" \
  "# which runs, for (w, c) in (1,64) (2,64) (4,64) (2,256) (2,1024):" \
  "python3 <bench>/run.py single --name scaling-w\$w-c\$c -t1 -c\$c -d$duration --max-load $max_load --load-wait $load_wait \\" \
  "  --cmd 'exec \"\$FERRICORN\" -b 127.0.0.1:$port -w \$w --chdir \"\$APPS\" hello:app' --env VIRTUAL_ENV=\$BENCH_VENV ..." \
  "# then the idle-connection part (see the comments in run.sh):" \
  "ferricorn -c idle.toml -b 127.0.0.1:$port -w 2 --chdir <bench>/apps hello:app &" \
  "python3 benches/scaling/idle_conns.py --port $port -n $idle_n --ready-file ... &" \
  "# <bench> = the harness (benches/harness), \$BENCH_VENV = <tmp>/benchvenv" > "$out/command.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f2)"
  echo "rustc: $(rustc --version)"
  echo "python (venv): $("$venv/bin/python" -V 2>&1)"
  echo "ulimit -n: $(ulimit -n)"
  echo "ferricorn: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet -- src Cargo.toml Cargo.lock build.rs || echo -dirty)"
  git -C "$root" diff --stat -- src Cargo.toml Cargo.lock build.rs | sed 's/^/  uncommitted: /'
  echo "start: $quiet_note"
} > "$out/machine.txt"

# --- 2. workers x connections -------------------------------------------------------
export FERRICORN="$bin" APPS="$bench/apps"
points=("1 64" "2 64" "4 64" "2 256" "2 1024")
for ((r = 1; r <= rounds; r++)); do
  for p in "${points[@]}"; do
    read -r w c <<<"$p"
    log "round $r/$rounds: -w $w, $c connections"
    # shellcheck disable=SC2016  # $FERRICORN and $APPS are expanded by run.py's shell
    python3 "$bench/run.py" single --name "scaling-w$w-c$c" \
      --cmd 'exec "$FERRICORN" -b 127.0.0.1:'"$port"' -w '"$w"' --chdir "$APPS" hello:app' \
      --url "$url" -t1 -c"$c" -d"$duration" --max-load "$max_load" --load-wait "$load_wait" \
      --env "VIRTUAL_ENV=$venv" --raw --out "$out/results.jsonl" >/dev/null
  done
done

# --- 3. idle keep-alive connections -------------------------------------------------
cat > "$out/idle.toml" <<EOF
# ferricorn config for the idle-connection part of benches/scaling/run.sh
[server]
# the default (5 s) closes idle keep-alive connections before they can be measured
keep_alive = 120

[limits]
# the default (10000) would leave connections past it waiting in the accept queue
max_connections = 20000
EOF

srv="" idle=""
cleanup() {
  # only the processes this script started
  if [ -n "$idle" ]; then kill "$idle" 2>/dev/null || true; fi
  if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
tree_pss_kib() {  # master + its workers
  local sum=0 p v
  for p in "$1" $(pgrep -P "$1"); do
    v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }  # whole machine
memline() {  # label -> one line of figures
  echo "$1 master_rss_kib=$(rss_kib "$srv") tree_pss_kib=$(tree_pss_kib "$srv") slab_kib=$(slab_kib) tcp_inuse=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)"
}
probes() {  # 20 single requests, each on a new connection: "status seconds" per line
  local _
  for _ in $(seq 20); do
    curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$url" || echo "000 5"
    sleep 0.1
  done
}

if curl -s -o /dev/null --max-time 1 "$url"; then echo "port $port already answers" >&2; exit 1; fi
log "idle connections: waiting for load < $max_load (at most ${load_wait}s)"
for ((t = 0; t < load_wait; t += 5)); do below "$(load1)" "$max_load" && break; sleep 5; done
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/idle-memory.txt"

VIRTUAL_ENV="$venv" "$bin" -c "$out/idle.toml" -b "127.0.0.1:$port" -w 2 --chdir "$bench/apps" hello:app \
  > "$tmp/ferricorn-scaling-idle.log" 2>&1 &
srv=$!
for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 "$url" && break; sleep 0.1; done

probes > "$out/idle-probes-before.txt"
wrk -t1 -c64 -d5s --latency "$url" > "$out/idle-wrk-before.txt"
sleep 2
memline before >> "$out/idle-memory.txt"

log "opening $idle_n idle keep-alive connections"
rm -f "$tmp/ferricorn-scaling-ready.json"
python3 "$here/idle_conns.py" --port "$port" -n "$idle_n" --ready-file "$tmp/ferricorn-scaling-ready.json" \
  --hold 600 > "$out/idle-conns.json" 2>/dev/null &
idle=$!
for _ in $(seq 600); do [ -f "$tmp/ferricorn-scaling-ready.json" ] && break; sleep 0.5; done
[ -f "$tmp/ferricorn-scaling-ready.json" ] || { echo "idle connections not set up in 300 s" >&2; exit 1; }
cp "$tmp/ferricorn-scaling-ready.json" "$out/idle-setup.json"
sleep 2
memline with >> "$out/idle-memory.txt"
t0=$(cpu_ticks "$srv"); sleep 10; t1=$(cpu_ticks "$srv")
echo "master_cpu_ticks_10s_idle=$((t1 - t0)) clk_tck=$(getconf CLK_TCK)" >> "$out/idle-memory.txt"
probes > "$out/idle-probes-with.txt"
wrk -t1 -c64 -d5s --latency "$url" > "$out/idle-wrk-with.txt"
sleep 1
memline "with-after-wrk" >> "$out/idle-memory.txt"

kill -TERM "$idle"; wait "$idle" || true; idle=""
sleep 3
memline after-close >> "$out/idle-memory.txt"
kill -TERM "$srv"; wait "$srv" || true; srv=""

# --- 4. report ----------------------------------------------------------------------
python3 "$here/report.py" "$out" | tee "$out/table.md"
log "results in $out"
