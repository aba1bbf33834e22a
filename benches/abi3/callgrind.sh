#!/usr/bin/env bash
# Instructions per request in one worker, counted by callgrind (repeatable on this
# noisy machine): the worker module as shipped (abi3, CPython's limited API) against
# the same code built for the full, version-specific API (`--no-default-features`),
# both on the host's CPython 3.11, serving GET /hello of tests/apps/probe.py.
# Per request = (I(N2) - I(N1)) / (N2 - N1), so start-up and import cancel out.
#   bash benches/abi3/callgrind.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/benches/results/$(date +%Y-%m-%d-%H%M)-callgrind}
work=${TMPDIR:-/tmp}/ferricorn-callgrind
PYTHON=${PYTHON:-python3.11}
N1=500 N2=2500
mkdir -p "$out" "$work"
cd "$root"
bash deploy/build-wheel.sh > "$work/build.log"
for kind in abi3 full; do
  flags=()
  [ "$kind" = full ] && flags=(--no-default-features)
  CARGO_TARGET_DIR="$work/target" target/maturin-venv/bin/maturin build --release \
    "${flags[@]}" -i "$PYTHON" --out "$work/wheels-$kind" >> "$work/build.log" 2>&1
  venv=$work/venv-$kind
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$work"/wheels-$kind/ferricorn-*.whl
  cat > "$venv/bin/python-cg" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/cg.$kind.%p "$venv/bin/python" "\$@"
WRAP
  chmod +x "$venv/bin/python-cg"
  for n in $N1 $N2; do
    rm -f "$work"/cg.$kind.*
    "$venv/bin/ferricorn" --python "$venv/bin/python-cg" -w 1 -b 127.0.0.1:18777 \
      --chdir tests/apps probe:app > "$work/server.log" 2>&1 &
    server=$!
    "$PYTHON" - "$n" <<'PY'
import http.client, sys, time
n = int(sys.argv[1])
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18777, timeout=60)
        c.request("GET", "/hello"); r = c.getresponse(); r.read()
        if r.status == 200: break
    except OSError:
        time.sleep(0.2)
for _ in range(n - 1):
    c.request("GET", "/hello"); r = c.getresponse(); r.read()
    assert r.status == 200
PY
    kill -TERM "$server"; wait "$server" || true
    # The worker's file is the one that served: the largest (the probe's is tiny).
    file=$(ls -S "$work"/cg.$kind.* | head -1)
    cp "$file" "$out/callgrind.$kind.$n.out"
    callgrind_annotate --inclusive=yes "$file" 2>/dev/null > "$out/annotate.$kind.$n.txt"
  done
done
python3 - "$out" "$N1" "$N2" <<'PY' | tee "$out/summary.md"
import re, sys
out, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def total(kind, n):
    text = open(f"{out}/annotate.{kind}.{n}.txt").read()
    return int(re.search(r"([\d,]+)(?: \(100\.0%\))?\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
per = {k: (total(k, n2) - total(k, n1)) / (n2 - n1) for k in ("abi3", "full")}
print("| build | instructions per request (the worker process) |")
print("| --- | --- |")
for kind, v in per.items():
    print(f"| {kind} | {v:,.0f} |")
print(f"\nabi3 / full: {per['abi3'] / per['full']:.3f}")
PY
