"""An app for the operations tests (tests/upgrade.rs, tests/systemd.rs, tests/worker_output.rs).

/pid          the worker's pid
/master-env   the variables systemd and an upgrading master address to the master
              alone, as the app's os.environ has them (JSON; empty when none leaked)
/print?line=L writes L (percent-decoded: any byte a client chooses) as one line to
              stdout, to stderr and through `logging`, as an app that logs a request's
              path does
/raise        raises (the worker's own record of it carries the request id)

With OPS_APP_FAIL_IF=PATH in the environment, the import fails while PATH exists: a
new binary's "new code" that does not import, for a failed USR2 upgrade. With
OPS_APP_HOLD_IF=PATH, the import waits while PATH exists: a new master still booting.
"""
import json
import logging
import os
import sys
from urllib.parse import unquote_to_bytes

import time

_hold_if = os.environ.get("OPS_APP_HOLD_IF")
while _hold_if and os.path.exists(_hold_if):
    time.sleep(0.02)

_fail_if = os.environ.get("OPS_APP_FAIL_IF")
if _fail_if and os.path.exists(_fail_if):
    raise RuntimeError("ops_app: told not to import")

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

log = logging.getLogger("ops_app")
_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(message)s"))
log.addHandler(_handler)
log.setLevel(logging.INFO)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/master-env":
        body = json.dumps({k: os.environ[k] for k in MASTER_ONLY if k in os.environ}).encode()
    elif path == "/print":
        query = environ.get("QUERY_STRING", "")
        raw = unquote_to_bytes(query.split("line=", 1)[1] if "line=" in query else "")
        line = raw.decode("utf-8", "surrogateescape")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        log.info("%s", line)
        body = b"printed"
    elif path == "/raise":
        raise RuntimeError("ops_app: raised on purpose")
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
