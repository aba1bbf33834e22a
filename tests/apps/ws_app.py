"""WebSockets at the edge, for tests/websocket_edge.rs: a Flask-Sock echo route and
raw routes that take environ["gunicorn.socket"] as gunicorn apps do.

/echo         Flask-Sock: echoes each message
/raw          the 101 head (accept computed from the key) and "hi" in the same write,
              then a byte echo until the peer shuts its side
/report       /raw, whose first bytes after the head are a report of the environ
/refuse       a WSGI 403, socket untouched
/socket403    a 403 written into the socket, with a 5-byte body
/no-upgrade   a 101 without Upgrade (the front must refuse it: 502)
/bad-accept   a 101 with a wrong Sec-WebSocket-Accept (502)
/garbled      bytes that are no HTTP head (502)
/huge         a head that never ends, 70 KB (502)
/answer101    a WSGI "101" answer (no socket taken): 502 as today
/flood        the head, then 64 KiB writes until one blocks for 2 s; prints
              "flooded N" (bytes written) on stderr
/pid          the worker's pid, for any request
"""
import base64
import hashlib
import os
import socket
import sys

from flask import Flask
from flask_sock import Sock

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

flask_app = Flask(__name__)
sock = Sock(flask_app)


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())


def _accept(environ):
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _head(environ, extra=b""):
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + _accept(environ) + b"\r\n"
        + extra + b"\r\n"
    )


def _report(environ):
    keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_UPGRADE",
            "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_VERSION", "HTTP_X_FORWARDED_FOR",
            "REMOTE_ADDR", "wsgi.url_scheme", "SERVER_PROTOCOL")
    facts = " ".join(f"{k}={environ.get(k, '')}" for k in keys)
    return (facts + "\n").encode()


def _echo(s):
    while True:
        data = s.recv(65536)
        if not data:
            break
        s.sendall(data)


def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/answer101":
        start_response("101 Switching Protocols", [("Upgrade", "websocket")])
        return []
    if path == "/refuse" or "gunicorn.socket" not in environ:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"no socket" if "gunicorn.socket" not in environ else b"refused"]
    s = environ["gunicorn.socket"]
    if path == "/raw":
        s.sendall(_head(environ) + b"hi")
        _echo(s)
    elif path == "/report":
        s.sendall(_head(environ, b"Sec-WebSocket-Protocol: chat\r\n") + _report(environ))
        _echo(s)
    elif path == "/flood":
        s.sendall(_head(environ))
        s.settimeout(2)
        sent = 0
        chunk = b"x" * 65536
        try:
            while sent < 256 * 1024 * 1024:
                sent += s.send(chunk)
        except socket.timeout:
            pass
        print(f"flooded {sent}", file=sys.stderr, flush=True)
    elif path == "/socket403":
        s.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!")
    elif path == "/no-upgrade":
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: "
                  + _accept(environ) + b"\r\n\r\n")
    elif path == "/bad-accept":
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n")
    elif path == "/garbled":
        s.sendall(b"\x00\x01garbage\r\n\r\n")
    elif path == "/huge":
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nX-Long: " + b"a" * 70000)
        _echo(s)
    start_response("200 OK", [])
    return []


def app(environ, start_response):
    if environ["PATH_INFO"] == "/echo":
        return flask_app(environ, start_response)
    return raw_app(environ, start_response)
