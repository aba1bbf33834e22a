#!/usr/bin/env bash
# Runs every test of ferricorn on a fresh machine, installing what the tests need:
# curl and openssl (Debian packages, if missing), Debian's chromium and
# chromium-driver for tests/browser.rs (if /usr/bin/chromium is missing), and a
# Python virtualenv under target/test-venv with pinned Flask and Django.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
# Build against the interpreter's own libpython (see build.rs: the RPATH trap).
PYO3_PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
export PYO3_PYTHON

need_apt=()
for tool in curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
# tests/browser.rs drives a real headless Chromium through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  need_apt+=(chromium chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

VENV=target/test-venv
REQS=tests/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQS" "$VENV/.requirements"; then
  echo "creating $VENV"
  rm -rf "$VENV"
  mkdir -p target
  "$PYO3_PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$VENV/.requirements"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --bins
cargo test --all-targets -- --test-threads "${TEST_THREADS:-2}"
