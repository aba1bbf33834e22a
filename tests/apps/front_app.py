"""App for tests/wsgi.rs: what the front must get right around the app.

/environ      the CGI part of the environ as JSON
/big?n=N      N bytes, with Content-Length
/cookies      two Set-Cookie fields
/raise        raises before start_response: a 500, the worker keeps serving
/raise-late   raises after the first body chunk: the response is cut
/slow-stream  a generator: a line every 0.3 s (no Content-Length)
/upload       sha256 and length of the body, read with wsgi.input.read(8192) in a loop
/pid          the worker's pid
/etag?weak    2 KiB of text with a strong ETag ("v1"), or a weak one (W/"v1")
"""
import hashlib
import json
import os
import time

from wsgiref.validate import validator


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/environ"):
        data = {k: v for k, v in environ.items() if isinstance(v, str)}
        data["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
        body = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        n = int(environ["QUERY_STRING"].split("=")[1])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return [b"x" * n]
    if path == "/cookies":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1; Path=/"),
                                  ("Set-Cookie", "b=2; Path=/")])
        return [b"two cookies"]
    if path == "/raise":
        raise RuntimeError("boom before the response")
    if path == "/raise-late":
        def gen():
            yield b"first part\n"
            raise RuntimeError("boom in the middle")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/slow-stream":
        def lines():
            for i in range(4):
                yield f"line {i}\n".encode()
                time.sleep(0.3)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return lines()
    if path == "/upload":
        h = hashlib.sha256()
        n = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(8192)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        body = json.dumps({"len": n, "sha256": h.hexdigest()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/etag":
        tag = 'W/"v1"' if environ["QUERY_STRING"] == "weak" else '"v1"'
        body = b"etag " * 400
        start_response("200 OK", [("Content-Type", "text/plain"), ("ETag", tag),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path\n"]


# wsgiref's validator checks every call the server makes; it raises (a 500 and a
# traceback in the log) on any PEP 3333 violation. /raise paths bypass it on purpose.
checked = validator(inner)


def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/raise"):
        return inner(environ, start_response)
    return checked(environ, start_response)
