#!/usr/bin/env bash
# Profiles one scenario of benches/asgi under load with py-spy (profile.py); makes py-spy's
# own venv (target/py-spy-venv, py-spy 0.4.3) on first use. Run benches/asgi/run.sh first
# (it makes target/asgi-bench-venv and installs ferricorn's wheel there).
#
#   bash benches/asgi/profile.sh ferricorn-hello [--native] [--duration 10]
#   bash benches/asgi/profile.sh granian-asgi-hello
# Writes target/asgi-profile/<scenario>.{md,raw.txt,server.log}.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tools="$root/target/py-spy-venv"
if [ "$("$tools/bin/py-spy" --version 2>/dev/null)" != "py-spy 0.4.3" ]; then
  rm -rf "$tools"
  "${PYTHON:-python3.11}" -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check py-spy==0.4.3
fi
cd "$root"
venv="$root/target/asgi-bench-venv"
# The wheel's worker module is stripped (pyproject.toml): for Rust frames with names,
# --native swaps in the same crate built by cargo with its debug info, and puts the
# wheel's module back when done.
if [[ " $* " == *" --native "* ]]; then
  export PYO3_PYTHON=${PYO3_PYTHON:-$(command -v "${PYTHON:-python3.11}")}
  cargo build --release --locked -p ferricorn-worker >&2
  module=$(echo "$venv"/lib/python3*/site-packages/ferricorn/_worker.abi3.so)
  trap '"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$root"/target/wheels/ferricorn-*.whl' EXIT
  cp "$root/target/release/lib_worker.so" "$module"
fi
BENCH_VENV="$root/target/asgi-bench-venv" FERRICORN_ROOT="$root" PY_SPY="$tools/bin/py-spy" \
  python3 "$root/benches/asgi/profile.py" "$@"
