#!/usr/bin/env bash
# The README's first command: builds the wheel (deploy/build-wheel.sh), installs it
# into target/demo-venv, and runs that venv's ferricorn on conf/demo.toml: the demo
# app (conf/demo/demo_app.py) and static_fixtures/ at /static/ on 127.0.0.1:8000.
# Extra arguments go to ferricorn.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
bash deploy/build-wheel.sh
VENV=target/demo-venv
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall target/wheels/ferricorn-*.whl
exec "$VENV/bin/ferricorn" -c conf/demo.toml "$@"
