#!/usr/bin/env bash
# in-chroot.sh ROOT USER COMMAND...: runs COMMAND in the chroot ROOT as USER, with a
# clean environment, /proc and /dev mounted in a private mount namespace (gone when
# the command exits). Everything execs, so COMMAND keeps this script's pid: a test
# that signals the pid it started signals the server itself.
set -euo pipefail
root=$(realpath "$1")
user=$2
shift 2
exec unshare --mount --propagation private -- /bin/sh -c '
  root=$1 user=$2; shift 2
  mount --rbind /dev "$root/dev" && mount -t proc proc "$root/proc" || exit 125
  home=$(chroot "$root" /usr/bin/getent passwd "$user" | cut -d: -f6)
  exec chroot --userspec="$user:$user" "$root" /usr/bin/env -i \
    PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME="${home:-/}" "$@"
' in-chroot "$root" "$user" "$@"
