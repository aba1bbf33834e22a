"""An app that misbehaves on request, for tests/reliability.rs.

/pid                 the worker's pid
/status?s=999 X[&pad=N]  answers with that status line (a body of 10 + N bytes)
/big-header?n=N      one response header of N bytes
/raise               raises inside the app
/host                HTTP_HOST and SERVER_NAME as the app sees them
/stream?n=N&pause=S  N chunks of 1000 bytes, S seconds apart
/stderr?n=N[&nl=1]   writes N bytes to stderr (a newline after them with nl=1)
/break-wire          writes garbage on the worker's socket to the master
/count[?add=1]       a per-worker counter: adds one, or reads it
/slow-read?chunk=N&pause=S  reads the body N bytes at a time, S seconds apart
"""
import os
import sys
import time
from urllib.parse import parse_qs, unquote


COUNT = [0]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    status, headers, body = "200 OK", [("Content-Type", "text/plain")], None
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/status":
        status, body = unquote(q["s"]), b"odd status" + b"." * int(q.get("pad", 0))
    elif path == "/big-header":
        headers.append(("X-Big", "x" * int(q["n"])))
        body = b"big"
    elif path == "/raise":
        raise RuntimeError("the app failed on purpose")
    elif path == "/host":
        body = "{} {}".format(environ.get("HTTP_HOST"), environ["SERVER_NAME"]).encode()
    elif path == "/stream":
        start_response(status, headers)
        return _stream(int(q["n"]), float(q["pause"]))
    elif path == "/stderr":
        sys.stderr.write("e" * int(q["n"]) + ("\n" if q.get("nl") else ""))
        sys.stderr.flush()
        body = b"wrote"
    elif path == "/slow-read":
        total, stream = 0, environ["wsgi.input"]
        while True:
            data = stream.read(int(q["chunk"]))
            if not data:
                break
            total += len(data)
            time.sleep(float(q["pause"]))
        body = str(total).encode()
    elif path == "/count":
        COUNT[0] += 1 if q.get("add") else 0
        body = str(COUNT[0]).encode()
    elif path == "/break-wire":
        for fd in os.listdir("/proc/self/fd"):
            if os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
                os.write(int(fd), b"\xff" * 64)
        body = b"broke"
    else:
        body = b"ok"
    start_response(status, headers + [("Content-Length", str(len(body)))])
    return [body]


def _stream(n, pause):
    for i in range(n):
        if i:
            time.sleep(pause)
        yield b"s" * 1000
