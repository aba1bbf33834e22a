"""Probe WSGI app for tests/worker_protocol.rs: each path exercises one part of
PEP 3333 and answers with something the test can check."""
import json
import sys
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator, WSGIWarning

warnings.simplefilter("error", WSGIWarning)


def _q(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _record(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Closing:
    """An iterable whose close() leaves a trace in a file."""

    def __init__(self, environ, record, chunks, block_on_input=False):
        self.environ, self.record, self.chunks = environ, record, chunks
        self.block_on_input = block_on_input

    def __iter__(self):
        for c in self.chunks:
            yield c
        if self.block_on_input:
            # Blocks until the front aborts the stream (then raises OSError).
            self.environ["wsgi.input"].read()
            yield b"never"

    def close(self):
        _record(self.record, "closed")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _q(environ)
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, world!"]
    if path == "/echo":
        if "announce" in q:
            environ["wsgi.errors"].write("echo: reading the body\n")
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    if path == "/read_n":
        n = int(q.get("n", "3"))
        parts = []
        while True:
            chunk = environ["wsgi.input"].read(n)
            if not chunk:
                break
            parts.append(chunk.decode("latin-1"))
        return _json(start_response, parts)
    if path == "/lines":
        inp = environ["wsgi.input"]
        first = inp.readline()
        limited = inp.readline(2)
        rest_lines = inp.readlines()
        return _json(start_response, [first.decode(), limited.decode(), [l.decode() for l in rest_lines]])
    if path == "/iter_input":
        return _json(start_response, [l.decode() for l in environ["wsgi.input"]])
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"two,")
        return [b"three"]
    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/exc_info_after":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"unreachable"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]
    if path == "/raise_before":
        raise RuntimeError("boom before the head")
    if path == "/raise_after":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first"
            raise RuntimeError("boom after the head")
        return gen()
    if path == "/cl_short":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"12345"]
    if path == "/cl_long":
        start_response("200 OK", [("Content-Length", "3")])
        return [b"1234567890"]
    if path == "/bad_header":
        start_response("200 OK", [("X-Evil", "a\r\nInjected: yes")])
        return [b"no"]
    if path == "/bad_item":
        start_response("200 OK", [])
        return ["a str, not bytes"]
    if path == "/cookies":
        start_response("200 OK", [("Set-Cookie", "a=1"), ("Connection", "close"),
                                   ("Set-Cookie", "b=2"), ("Transfer-Encoding", "chunked")])
        return [b"ok"]
    if path == "/file":
        f = open(q["path"], "rb")
        if "skip" in q:
            f.read(int(q["skip"]))
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/file_py":
        import io
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from a BytesIO"), 4)
    if path == "/close":
        start_response("200 OK", [])
        return Closing(environ, q["record"], [b"a", b"b"])
    if path == "/close_abort":
        start_response("200 OK", [])
        return Closing(environ, q["record"], [b"x"], block_on_input=True)
    if path.startswith("/environ"):
        out = {}
        for k, v in environ.items():
            out[k] = [type(v).__name__, v if isinstance(v, (str, bool, int)) else repr(v)]
        return _json(start_response, out)
    if path == "/pyinfo":
        import os
        return _json(start_response, {
            "version": sys.version.split()[0], "prefix": sys.prefix, "base_prefix": sys.base_prefix,
            "executable": sys.executable, "path": sys.path, "cwd": os.getcwd(),
        })
    if path == "/venvmod":
        import venvonly
        return _json(start_response, venvonly.VALUE)
    if path.startswith("/validated"):
        return validated(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


def _sample(environ, start_response):
    inp = environ["wsgi.input"]
    line = inp.readline()
    rest = inp.read(1000)  # the validator insists on an explicit size
    environ["wsgi.errors"].write("validated app ran\n")
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"w:")
    return [b"line=" + line, b"rest=" + rest]


validated = validator(_sample)
