"""An app for tests/preload.rs that tells who imported it.

At import it appends the importing process's pid to $PRELOAD_IMPORTS (one line per
import), and optionally starts a thread ($PRELOAD_THREAD=1).

/who     "IMPORTER WORKER": the pid that imported the module, and the worker's own
/crash   the worker dies (SIGKILL to itself)
/sleep   the same as /who, after 0.5 s
"""
import os
import signal
import threading
import time

IMPORTED_BY = os.getpid()

with open(os.environ["PRELOAD_IMPORTS"], "a") as f:
    f.write(f"{IMPORTED_BY}\n")

if os.environ.get("PRELOAD_THREAD") == "1":
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if path == "/sleep":
        time.sleep(0.5)
    body = f"{IMPORTED_BY} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
