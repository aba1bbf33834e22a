#!/usr/bin/env bash
# Builds the ferricorn wheel into target/wheels/: the front binary (release build)
# staged as the wheel's bin/ script, plus the worker extension module built by a
# pinned maturin (installed on first use into target/maturin-venv). One wheel serves
# every CPython >= 3.9 on this platform (abi3).
#
#   bash deploy/build-wheel.sh            # then: pip install target/wheels/ferricorn-*.whl
#
# PYTHON picks the interpreter that runs maturin (any CPython >= 3.9).
set -euo pipefail
cd "$(dirname "$0")/.."

MATURIN_VERSION=1.16.0
PYTHON=${PYTHON:-python3}
TOOLS=target/maturin-venv
if [ "$("$TOOLS/bin/maturin" --version 2>/dev/null)" != "maturin $MATURIN_VERSION" ]; then
  rm -rf "$TOOLS"
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "maturin==$MATURIN_VERSION"
fi

cargo build --release --locked --bin ferricorn
rm -rf target/wheel-data
mkdir -p target/wheel-data/scripts
# Debug info stays in target/release for profiling; the installed binary needs none.
objcopy --strip-debug target/release/ferricorn target/wheel-data/scripts/ferricorn
chmod 0755 target/wheel-data/scripts/ferricorn

rm -f target/wheels/ferricorn-*.whl
"$TOOLS/bin/maturin" build --release --locked --interpreter "$PYTHON" --out target/wheels
ls target/wheels/ferricorn-*.whl
