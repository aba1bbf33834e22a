"""A small app for the supervisor and edge tests.

/pid          the worker's pid
/sleep?s=N    sleeps N seconds, then answers
/wait?for=P   touches P.started, then waits silently until file P exists; answers its pid
/drip?until=P touches P.started, then sends a byte every 0.2 s until file P exists, then "done"
/crash        the worker dies (SIGKILL to itself) mid-request
/echo         echoes the body
/orphan       leaves a grandchild behind that exits 0.5 s later; answers its pid
/grow?mb=N    the worker keeps N MiB more (written, so resident); answers its pid
/environ      the request's HTTP_* variables and REMOTE_ADDR, as JSON
/download?to=URL    X-Accel-Redirect: URL, with Content-Disposition and Cache-Control
/sendfile?path=P    X-Sendfile: P, likewise

`application` is the same app, for `sup_app` without `:callable`.
"""
import json
import os
import signal
import time

# What /grow keeps alive: the worker's memory only grows.
_kept = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/sleep":
        seconds = float(query.split("=", 1)[1]) if "=" in query else 1.0
        time.sleep(seconds)
        body = b"slept"
    elif path == "/wait":
        flag = _flag(query)
        while not os.path.exists(flag):
            time.sleep(0.02)
        body = str(os.getpid()).encode()
    elif path == "/drip":
        flag = _flag(query)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _drip(flag)
    elif path == "/crash":
        os.kill(os.getpid(), signal.SIGKILL)
        body = b"unreachable"
    elif path == "/orphan":
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(0.5)
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.waitpid(child, 0)
        os.close(w)
        body = os.read(r, 32)
        os.close(r)
    elif path == "/grow":
        mb = int(query.split("=", 1)[1]) if "=" in query else 1
        _kept.append(b"\x01" * (mb << 20))
        body = str(os.getpid()).encode()
    elif path == "/environ":
        seen = {k: v for k, v in environ.items() if k.startswith("HTTP_") or k == "REMOTE_ADDR"}
        body = json.dumps(seen).encode()
    elif path in ("/download", "/sendfile"):
        from urllib.parse import parse_qs
        target = parse_qs(query).get("to" if path == "/download" else "path", [""])[0]
        field = "X-Accel-Redirect" if path == "/download" else "X-Sendfile"
        body = b"the app's body, which the client must not see"
        start_response("200 OK", [
            (field, target),
            ("Content-Disposition", 'attachment; filename="report.txt"'),
            ("Cache-Control", "private, max-age=60"),
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
        ])
        return [body]
    elif path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _flag(query):
    """The file a view waits for (`?for=P` or `?until=P`); P.started says it began."""
    from urllib.parse import unquote
    flag = unquote(query.split("=", 1)[1])
    open(flag + ".started", "w").close()
    return flag


def _drip(flag):
    while not os.path.exists(flag):
        yield b"."
        time.sleep(0.2)
    yield b"done"


application = app
