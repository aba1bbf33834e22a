#!/usr/bin/env bash
# Builds the ferricorn wheel into target/wheels/ with the same PEP 517 build that
# `pip install .` runs (pyproject.toml: deploy/pep517/ferricorn_build.py builds the
# front, maturin the worker module), on a pinned maturin installed on first use into
# target/maturin-venv (no build isolation, so no download per build). One wheel
# serves every CPython >= 3.9 on this platform (abi3); maturin's audit gives it its
# manylinux tag (`pip install .` skips the audit: a linux_* tag, for this machine).
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

rm -f target/wheels/ferricorn-*.whl
# PATH: the backend runs the venv's `maturin` command.
PATH="$PWD/$TOOLS/bin:$PATH" "$TOOLS/bin/python" -m pip wheel -q --disable-pip-version-check \
  --no-deps --no-build-isolation --config-settings maturin.build-args="--compatibility pypi" \
  --wheel-dir target/wheels .
ls target/wheels/ferricorn-*.whl
