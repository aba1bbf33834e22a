#!/usr/bin/env bash
# ASGI benchmark (issue 27): ferricorn `-k asgi` against Granian `--interface asgi`
# (defaults, and tuned: `--loop uvloop --runtime-mode st`), uvicorn (uvloop + httptools),
# Hypercorn (uvloop) and gunicorn's ASGI worker, 2 workers each, on a raw ASGI hello and
# a Django `async def` view (scenarios.toml). The shared harness (benches/harness/run.py)
# runs the rounds interleaved (A B C ... A B C ...) with the same wrk load
# (`wrk -t1 -c64 -d10s --latency` after a 2 s warm-up) and samples each server's CPU and
# memory; report.py makes the tables (medians, p50/p99, ratios to Granian ASGI).
#
#   bash benches/asgi/run.sh                  # 5 rounds of 10 s, both apps
#   SMOKE=1 bash benches/asgi/run.sh          # 1 round of 2 s, no load wait, then
#                                             # report.py --check (exit 1 on any failure)
#   ONLY=ferricorn-hello,granian-asgi-hello bash benches/asgi/run.sh
#   FERRICORN=0 SMOKE=1 bash benches/asgi/run.sh   # the peers alone, nothing built
#
# No manual step: it installs wrk (apt) when missing, makes the pinned venv
# target/asgi-bench-venv (requirements.txt; remade when that file changes), builds the
# release binary and the worker module (deploy/build-wheel.sh) and installs that wheel
# into the venv, where ferricorn's workers run (VIRTUAL_ENV).
# Writes benches/results/<date>-asgi/{results.jsonl,table.txt,ratios.md,command.txt,
# machine.txt}; a smoke run writes under target/asgi-bench-smoke/ instead.
#
# Environment [defaults]: ROUNDS [5], DURATION [10s], MAX_LOAD [2.5] and LOAD_WAIT [60]
# (before each run, wait at most LOAD_WAIT s for the 1-min load to fall below MAX_LOAD),
# BUILD=0 (use the existing target/release/ferricorn and target/wheels wheel),
# PYTHON [python3.11] for the venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/benches/asgi"
harness="$root/benches/harness"
venv="$root/target/asgi-bench-venv"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
smoke=${SMOKE:-0}
with_ferricorn=${FERRICORN:-1}
if [ "$smoke" = 1 ]; then
  rounds=1 duration=2s warmup=0.5 max_load=99 load_wait=0
else
  rounds=${ROUNDS:-5} duration=${DURATION:-10s} warmup=2 max_load=${MAX_LOAD:-2.5}
  load_wait=${LOAD_WAIT:-60}
fi
say() { printf '[asgi-bench] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- wrk
if ! command -v wrk >/dev/null; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  say "installing wrk (apt-get)"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi

# ---------------------------------------------------------------- the peers' venv
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  say "making $venv (pinned: benches/asgi/requirements.txt)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$venv/.requirements.sha256"
fi

# ---------------------------------------------------------------- ferricorn
if [ "$with_ferricorn" != 0 ]; then
  if [ "${BUILD:-1}" != 0 ]; then
    export PYO3_PYTHON=${PYO3_PYTHON:-$("$python" -c 'import sys; print(sys.executable)')}
    (cd "$root" && PYTHON="$python" bash deploy/build-wheel.sh >&2)
  fi
  wheel=$(ls "$root"/target/wheels/ferricorn-*.whl)
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel"
fi

# ---------------------------------------------------------------- which scenarios
only=${ONLY:-}
if [ -z "$only" ] && [ "$with_ferricorn" = 0 ]; then
  only=$(python3 -c 'import sys, tomllib
names = [s["name"] for s in tomllib.load(open(sys.argv[1], "rb"))["scenario"]]
print(",".join(n for n in names if not n.startswith("ferricorn-")))' "$here/scenarios.toml")
fi

stamp=$(date +%Y-%m-%d-%H%M)
if [ "$smoke" = 1 ]; then
  out="$root/target/asgi-bench-smoke/$stamp"
else
  out="$root/benches/results/$stamp-asgi"
fi
mkdir -p "$out"
rm -f "$out/results.jsonl"
args=(suite "$here/scenarios.toml" -n "$rounds" -d "$duration" --warmup "$warmup"
      --max-load "$max_load" --load-wait "$load_wait" --out "$out/results.jsonl")
[ -n "$only" ] && args+=(--only "$only")

settings="ROUNDS=$rounds DURATION=$duration MAX_LOAD=$max_load LOAD_WAIT=$load_wait "
[ "$smoke" = 1 ] && settings="SMOKE=1 "
[ "$with_ferricorn" = 0 ] && settings+="FERRICORN=0 "
[ "${BUILD:-1}" = 0 ] && settings+="BUILD=0 "
shown="cd <repo> && $settings${ONLY:+ONLY=$ONLY }bash benches/asgi/run.sh"
printf '%s\n' "$shown" "# which runs:" \
  "python3 benches/harness/run.py suite benches/asgi/scenarios.toml -n $rounds -d $duration --warmup $warmup --max-load $max_load --load-wait $load_wait --out results.jsonl${only:+ --only $only}" \
  "# with BENCH_VENV=target/asgi-bench-venv" > "$out/command.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f2)"
  echo "python: $("$venv/bin/python" -c 'import platform; print(platform.python_version())')"
  echo "venv: $("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | grep -v '^ferricorn' | tr '\n' ' ')"
  echo "rustc: $(rustc --version)"
  echo "ferricorn: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo -dirty)"
} > "$out/machine.txt"

say "$rounds round(s) of ${only:-every scenario} -> $out"
(cd "$root" && BENCH_VENV="$venv" FERRICORN_ROOT="$root" python3 "$harness/run.py" "${args[@]}" \
  > "$out/runs.log")
python3 "$harness/run.py" table "$out/results.jsonl" > "$out/table.txt"
python3 "$here/report.py" "$out/results.jsonl" | tee "$out/ratios.md"
if [ "$smoke" = 1 ]; then
  python3 "$here/report.py" --check "$out/results.jsonl"
fi
