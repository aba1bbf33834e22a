#!/usr/bin/env bash
# The newer CPythons that tests/pythons.rs runs ferricorn on, from Debian's packages:
# a sid chroot under target/ (debootstrap, made once and then cached) with python3.13,
# python3.14 and python3.15 when sid has it. In it, for every run:
#   - a venv per Python at /opt/venv-X.Y with this run's wheel installed by pip
#     (re-installed when the wheel changes), its list in /opt/pythons.txt;
#   - an unprivileged user `ferri`, who runs the servers;
#   - Debian's pypy3, an interpreter ferricorn must refuse;
#   - the test apps at /opt/apps;
#   - on 3.14, Django 6.1.3 and a fresh `django-admin startproject` site in
#     /home/ferri/mysite, migrated, with a superuser admin / $DJANGO_ADMIN_PASSWORD.
# tests/run-all.sh calls it after the wheel is built.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${FERRICORN_CHROOT:-target/chroot-sid}
DJANGO_VERSION=6.1.3
DJANGO_ADMIN_PASSWORD=s3cret-pass
in_root() { bash tests/pythons/in-chroot.sh "$ROOT" root "$@"; }
as_ferri() { bash tests/pythons/in-chroot.sh "$ROOT" ferri "$@"; }

need=()
for tool in debootstrap unshare; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap util-linux > /dev/null
fi

if [ ! -x "$ROOT/usr/bin/python3.14" ]; then
  echo "making the Debian sid chroot $ROOT (debootstrap, about 70 s)"
  rm -rf "$ROOT.partial"
  mkdir -p target
  if ! debootstrap --variant=minbase --include=python3.14-venv,python3.13-venv \
      sid "$ROOT.partial" > target/debootstrap.log 2>&1; then
    tail -20 target/debootstrap.log
    exit 1
  fi
  mv "$ROOT.partial" "$ROOT"
fi
# pip inside needs the host's CA bundle (the chroot's is empty) and a resolver.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

pythons="3.13 3.14"
if [ -x "$ROOT/usr/bin/python3.15" ]; then
  pythons="$pythons 3.15"
elif in_root apt-get install -y -qq python3.15-venv > target/chroot-apt.log 2>&1; then
  pythons="$pythons 3.15"
elif in_root apt-cache show python3.15-venv >/dev/null 2>&1; then
  # sid has it, and it did not install: that is a failure, not a skip.
  tail -20 target/chroot-apt.log
  exit 1
fi
# minbase has no useradd: the entries are written as useradd would.
# Debian's PyPy: a real Python that is not CPython, for the mismatch line.
if [ ! -x "$ROOT/usr/bin/pypy3" ]; then
  in_root apt-get install -y -qq pypy3 > target/chroot-apt.log 2>&1 || { tail -20 target/chroot-apt.log; exit 1; }
fi

if ! grep -q '^ferri:' "$ROOT/etc/passwd"; then
  echo 'ferri:x:1500:1500:ferricorn tests:/home/ferri:/bin/sh' >> "$ROOT/etc/passwd"
  echo 'ferri:x:1500:' >> "$ROOT/etc/group"
fi
mkdir -p "$ROOT/home/ferri"
chown 1500:1500 "$ROOT/home/ferri"

wheel=$(ls target/wheels/ferricorn-*.whl)
mkdir -p "$ROOT/opt/wheels"
rm -f "$ROOT"/opt/wheels/*.whl
cp "$wheel" "$ROOT/opt/wheels/"
inner_wheel=/opt/wheels/$(basename "$wheel")
stamp=$(sha256sum "$wheel" | cut -c1-16)
for v in $pythons; do
  venv=/opt/venv-$v
  if [ ! -x "$ROOT$venv/bin/python" ]; then
    in_root "python$v" -m venv "$venv"
  fi
  if [ "$(cat "$ROOT$venv/.wheel" 2>/dev/null)" != "$stamp" ]; then
    in_root "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$inner_wheel"
    echo "$stamp" > "$ROOT$venv/.wheel"
  fi
done
printf '%s\n' $pythons > "$ROOT/opt/pythons.txt"

rm -rf "$ROOT/opt/apps"
cp -r tests/apps "$ROOT/opt/apps"
rm -rf "$ROOT/opt/apps/djsite"

dj=/opt/venv-3.14
if ! in_root "$dj/bin/python" -c "import django, sys; sys.exit(django.__version__ != '$DJANGO_VERSION')" 2>/dev/null; then
  in_root "$dj/bin/pip" install -q --disable-pip-version-check "Django==$DJANGO_VERSION"
fi
rm -rf "$ROOT/home/ferri/mysite"
as_ferri /bin/sh -c "mkdir /home/ferri/mysite && $dj/bin/django-admin startproject mysite /home/ferri/mysite"
as_ferri /bin/sh -c "cd /home/ferri/mysite && $dj/bin/python manage.py migrate --noinput -v 0 \
  && DJANGO_SUPERUSER_PASSWORD=$DJANGO_ADMIN_PASSWORD $dj/bin/python manage.py createsuperuser \
     --noinput --username admin --email admin@example.com"
echo "chroot ready: CPython $(echo $pythons) in $ROOT"
