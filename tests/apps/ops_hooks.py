"""Hooks for tests/upgrade.rs: `when_ready` (run by the master's hooks helper) and
`post_fork` (run by each worker) write the master-only variables their process
sees, as JSON, to $OPS_HOOKS_OUT.<hook>.<pid> (atomically, so a reader sees it whole)."""
import json
import os

# As in ops_app.py (a worker loads its hooks before the app's directory is on
# sys.path, so they cannot be imported from there).
MASTER_ONLY = (
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_FDS_FIRST_FD",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "FERRICORN_UPGRADE_FROM",
    "FERRICORN_ADMIN_FD",
)


def _write(hook):
    out = os.environ.get("OPS_HOOKS_OUT")
    if not out:
        return
    seen = {k: os.environ[k] for k in MASTER_ONLY if k in os.environ}
    path = f"{out}.{hook}.{os.getpid()}"
    with open(path + ".tmp", "w") as f:
        json.dump(seen, f)
    os.replace(path + ".tmp", path)


def when_ready(server):
    _write("when_ready")


def post_fork(server, worker):
    _write("post_fork")
