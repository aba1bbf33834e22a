#!/usr/bin/env bash
# Side-by-side benchmark of ferricorn and its peers, interleaved rounds, with the
# harness in benches/harness (run.py, a copy of the team's shared one). One suite per directory under benches/:
#   static  ferricorn vs nginx on a 1 KiB and a 1 MiB file from the same directory
#   wsgi    hello world, 2 workers: ferricorn vs gunicorn sync/gthread, nginx+gunicorn, Granian
#   django  the harness's Django view, 2 workers: ferricorn vs gunicorn, nginx+gunicorn, Granian
#   granian hello world, 2 workers: ferricorn vs Granian only (more rounds in the same time)
#   abi3    hello and Django, 2 workers: the worker module (this checkout) vs the
#           embedded interpreter of 282f85e (issue 13's "no slower")
# Writes benches/results/<date>-<suite>/{results.jsonl,table.txt,ratios.md,command.txt,machine.txt}.
#
#   bash benches/run.sh wsgi                  # 3 rounds, harness defaults (load < 0.8)
#   ROUNDS=5 MAX_LOAD=1.5 bash benches/run.sh static
#   BENCH=/path/to/shared/bench bash benches/run.sh django
#   ONLY=ferricorn-django,bjoern-django bash benches/run.sh django   # some scenarios
#   preload ferricorn's Django view, 4 workers, without and with --preload (PSS)
set -euo pipefail

suite=${1:?usage: bash benches/run.sh static|wsgi|django|granian}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here="$root/benches/$suite"
[ -f "$here/scenarios.toml" ] || { echo "no suite $suite ($here/scenarios.toml)" >&2; exit 2; }
shared=${BENCH:-$root/benches/harness}
rounds=${ROUNDS:-3}
max_load=${MAX_LOAD:-0.8}
tmp=$(python3 -c 'import tempfile; print(tempfile.gettempdir())')

[ -f "$shared/run.py" ] || { echo "no harness at $shared (set BENCH=)" >&2; exit 1; }

# A private, writable copy of the harness: setup.sh generates static/*.bin into it, and
# nginx (as www-data) and ferricorn serve that same directory.
harness="$tmp/ferricorn-bench-harness"
rm -rf "$harness"
cp -r "$shared" "$harness"
chmod -R u+w,a+rX "$harness"
BENCH_UWSGI=${BENCH_UWSGI:-0} bash "$harness/setup.sh"
export NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

# ferricorn's workers run on the harness venv's python: the wheel (which also builds
# target/release/ferricorn) goes into that venv.
(cd "$root" && bash deploy/build-wheel.sh)
bench_venv=$(realpath -m -s "${BENCH_VENV:-$tmp/benchvenv}")
"$bench_venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall \
  "$root"/target/wheels/ferricorn-*.whl
if [ -x "$here/prepare.sh" ]; then
  bash "$here/prepare.sh"
fi

out="$root/benches/results/$(date +%Y-%m-%d-%H%M)-$suite"
mkdir -p "$out"
cmd=(python3 "$harness/run.py" suite "$here/scenarios.toml" -n "$rounds" --max-load "$max_load"
     --out "$out/results.jsonl" ${ONLY:+--only "$ONLY"})
printf '%s\n' "cd <repo> && ${ONLY:+ONLY=$ONLY }ROUNDS=$rounds MAX_LOAD=$max_load bash benches/run.sh $suite" \
  "# which runs:" "python3 <bench>/run.py suite benches/$suite/scenarios.toml -n $rounds --max-load $max_load --out results.jsonl" \
  "# <bench> = a writable copy of benches/harness made by run.sh" > "$out/command.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "nginx: $("$NGINX" -v 2>&1 | cut -d/ -f2)"
  echo "wrk: $(wrk --version 2>&1 | head -1 | cut -d' ' -f2)"
  echo "rustc: $(rustc --version)"
  echo "ferricorn: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo -dirty)"
} > "$out/machine.txt"

(cd "$root" && FERRICORN_ROOT="$root" "${cmd[@]}")
python3 "$harness/run.py" table "$out/results.jsonl" | tee "$out/table.txt"
python3 "$root/benches/ratios.py" "$out/results.jsonl" | tee "$out/ratios.md"
