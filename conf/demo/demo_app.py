"""ferricorn's demo WSGI app, served by `bash deploy/demo.sh` from the repository's
root (the README's first command: it builds and installs the wheel in
target/demo-venv, then runs that venv's ferricorn on conf/demo.toml). With ferricorn
installed in an activated venv: `ferricorn -c conf/demo.toml`, from the same place.

/            a small HTML page that links the static fixtures
/hello       plain text
/echo        echoes the request (method, path, query, headers, body) as JSON
/stream      a streamed response (no Content-Length), one line every 0.2 s
"""
import json
import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = (
            b"<!doctype html><html><head><title>ferricorn demo</title>"
            b'<link rel="stylesheet" href="/static/css/site.css"></head>'
            b"<body><h1>ferricorn demo</h1><p>This page comes from "
            b"conf/demo/demo_app.py; the stylesheet from static_fixtures/.</p>"
            b'<ul><li><a href="/hello">/hello</a></li><li><a href="/echo?x=1">/echo</a></li>'
            b'<li><a href="/stream">/stream</a></li><li><a href="/static/">/static/</a></li></ul>'
            b"</body></html>"
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"Hello, World!"]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = {
            "method": environ["REQUEST_METHOD"],
            "path": path,
            "query": environ.get("QUERY_STRING", ""),
            "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
            "body": environ["wsgi.input"].read(length).decode("latin-1"),
        }
        body = json.dumps(data, indent=1).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/stream":
        def lines():
            for i in range(5):
                yield f"line {i}\n".encode()
                time.sleep(0.2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return lines()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
