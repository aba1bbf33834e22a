#!/usr/bin/env bash
# Runs every test of ferricorn on a fresh machine, installing what the tests need:
# curl, openssl and systemd-analyze, Debian's chromium and chromium-driver for
# tests/browser.rs (Debian packages, each only if missing), a Python virtualenv under
# target/test-venv with pinned Flask and Django, and one under target/deploy-venv with
# the pinned validators of deploy/. `.ci/run` calls exactly this.
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
# tests/deploy.rs checks deploy/systemd/ferricorn.service with `systemd-analyze verify`.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
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

# The validators of deploy/ (kubernetes-validate, hadolint) for tests/deploy.rs.
DEPLOY_VENV=target/deploy-venv
DEPLOY_REQS=tests/deploy-requirements.txt
if [ ! -x "$DEPLOY_VENV/bin/python" ] || ! cmp -s "$DEPLOY_REQS" "$DEPLOY_VENV/.requirements"; then
  echo "creating $DEPLOY_VENV"
  rm -rf "$DEPLOY_VENV"
  mkdir -p target
  "$PYO3_PYTHON" -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$DEPLOY_REQS"
  "$DEPLOY_VENV/bin/pip" check --disable-pip-version-check
  cp "$DEPLOY_REQS" "$DEPLOY_VENV/.requirements"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build --bins
# Benches (criterion) are compiled by clippy above and run with benches/micro/run.sh.
cargo test --lib --bins --tests -- --test-threads "${TEST_THREADS:-2}"
