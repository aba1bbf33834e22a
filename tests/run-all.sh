#!/usr/bin/env bash
# Runs every test of ferricorn on a fresh machine, installing what the tests need:
# curl, openssl and systemd-analyze, podman and runc for tests/container.rs, Debian's
# chromium and chromium-driver for tests/browser.rs (Debian packages, each only if
# missing), a Python virtualenv under
# target/test-venv with pinned Flask, Django and the WebSocket apps and clients,
# Autobahn|Testsuite under target/autobahn (with a CPython 2.7), one under
# target/deploy-venv with
# the pinned validators of deploy/, one under target/build-venv with a pinned PEP 517
# front end (`build`), the wheel (deploy/build-wheel.sh, with a pinned maturin), and
# a Debian sid chroot with newer CPythons (tests/pythons/setup.sh, debootstrap).
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
# The worker crate's unit tests link this interpreter's libpython.
export PYO3_PYTHON=$PYTHON

need_apt=()
for tool in curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
# tests/deploy.rs checks deploy/systemd/ferricorn.service with `systemd-analyze verify`.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# tests/container.rs builds and runs deploy/Dockerfile with Debian's podman and runc.
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
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
  "$PYTHON" -m venv "$VENV"
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
  "$PYTHON" -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$DEPLOY_REQS"
  "$DEPLOY_VENV/bin/pip" check --disable-pip-version-check
  cp "$DEPLOY_REQS" "$DEPLOY_VENV/.requirements"
fi

# The PEP 517 front end `build` for tests/source_install.rs (it makes the sdist).
BUILD_VENV=target/build-venv
BUILD_REQS=tests/build-requirements.txt
if [ ! -x "$BUILD_VENV/bin/python" ] || ! cmp -s "$BUILD_REQS" "$BUILD_VENV/.requirements"; then
  echo "creating $BUILD_VENV"
  rm -rf "$BUILD_VENV"
  mkdir -p target
  "$PYTHON" -m venv "$BUILD_VENV"
  "$BUILD_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$BUILD_REQS"
  "$BUILD_VENV/bin/pip" check --disable-pip-version-check
  cp "$BUILD_REQS" "$BUILD_VENV/.requirements"
fi

# Autobahn|Testsuite for tests/websocket_autobahn.rs: Python 2.7 code (no Python 3
# release exists), installed with a CPython 2.7 (PYTHON2, or one on PATH, or pyenv's)
# into target/autobahn; Debian has no python2.7 package. Without one the test fails
# and says so.
AB_DIR=target/autobahn
AB_REQS=tests/autobahn-requirements.txt
PYTHON2=${PYTHON2:-}
if [ -z "$PYTHON2" ]; then
  for cand in python2.7 python2 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7; do
    if "$cand" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
      PYTHON2=$(command -v "$cand")
      break
    fi
  done
fi
if [ -z "$PYTHON2" ]; then
  echo "warning: no CPython 2.7 found (set PYTHON2): tests/websocket_autobahn.rs will fail" >&2
elif [ ! -f "$AB_DIR/.python" ] || ! cmp -s "$AB_REQS" "$AB_DIR/.requirements"; then
  echo "installing Autobahn|Testsuite into $AB_DIR with $PYTHON2"
  rm -rf "$AB_DIR"
  "$PYTHON2" -m pip install -q --disable-pip-version-check --no-warn-script-location \
    --no-deps --target "$AB_DIR" -r "$AB_REQS" 2>&1 | grep -v DEPRECATION || true
  "$PYTHON2" -c "import site; site.addsitedir('$AB_DIR'); import autobahntestsuite.wstest"
  echo "$PYTHON2" > "$AB_DIR/.python"
  cp "$AB_REQS" "$AB_DIR/.requirements"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The wheel users install (README: "Building the wheel"), installed into the test
# venv: its worker module is what every integration test's workers run.
PYTHON="$PYTHON" bash deploy/build-wheel.sh
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall target/wheels/ferricorn-*.whl
# The newer CPythons (3.13, 3.14, 3.15 when Debian has it) for tests/pythons.rs: a
# Debian sid chroot cached under target/, with venvs of this wheel.
bash tests/pythons/setup.sh
cargo build --bins
# Benches (criterion) are compiled by clippy above and run with benches/micro/run.sh.
cargo test --workspace --no-fail-fast --lib --bins --tests -- --test-threads "${TEST_THREADS:-2}"
