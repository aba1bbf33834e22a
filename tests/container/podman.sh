#!/usr/bin/env bash
# podman.sh ARGS...: Debian bookworm's podman 4.3 as it runs on the CI machine, for
# tests/container.rs. On a normal machine plain `docker build` / `podman build` and
# `run` do; here:
#   - storage: vfs under target/podman (no overlay in this VM's kernel setup);
#   - runtime: runc (crun fails with "cgroups in hybrid mode not supported");
#   - cgroups managed by cgroupfs (no systemd), events to a file (no journald);
#   - CONTAINERS_CONF with `default_ulimits = []`: the default limits make runc fail
#     with "setrlimit ... Operation not permitted".
# Everything execs, so a test that starts `podman run` through this script holds
# podman's pid, and podman's exit status is the container's.
set -euo pipefail
cd "$(dirname "$0")/../.."
state=$PWD/target/podman
mkdir -p "$state"
cat > "$state/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
CONF
export CONTAINERS_CONF=$state/containers.conf
exec podman --storage-driver=vfs --root "$state/storage" --runroot "$state/run" \
  --runtime runc --cgroup-manager=cgroupfs --events-backend=file \
  --tmpdir "$state/tmp" "$@"
