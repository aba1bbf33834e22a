"""Upgrade requests as gunicorn apps see them, for tests/websocket_handshake.rs,
tests/websocket_tunnel.rs, tests/websocket_ops.rs and tests/worker_socket.rs: raw
routes take environ["gunicorn.socket"], write their own 101 head (its accept
computed from the key) and then bytes, not frames; /echo is the Flask-Sock echo of
tests/apps/ws_echo.py.

/echo         Flask-Sock: echoes each message
/raw          the 101 head and "hi" in the same write, then a byte echo until the
              peer shuts its side
/report       /raw, whose first bytes after the head are a report of the environ
/idle/...     the head, then a byte echo: one blocked recv per connection (the
              2,000 idle WebSockets: the master's memory is measured, not a
              WebSocket library's)
/kept         the head, one line of facts about the socket, then an echo; the
              socket object is kept in KEPT (an app may hold it), so only the
              worker's close() ends the stream
/raise        the head, then ConnectionError (how a WebSocket library ends)
/fail         the head, then ValueError (an app bug: logged with its traceback)
/missing      the head, then FileNotFoundError: an OSError, but an app bug too
/refuse       a WSGI 403, socket untouched
/socket403    a 403 written into the socket, with a 5-byte body
/no-upgrade   a 101 without Upgrade (the front must refuse it: 502)
/bad-accept   a 101 with a wrong Sec-WebSocket-Accept (502)
/garbled      bytes that are no HTTP head (502)
/huge         a head that never ends, 70 KB (502)
/answer101    a WSGI "101" answer (no socket taken): the worker's 500, as before
/flood        the head, then 64 KiB writes until one blocks for 2 s; prints
              "flooded N" (bytes written) on stderr
/plain        never touches the socket: "socket=False" (or True), 200
/pid          the worker's pid, for any request
/sleep        a WSGI 200 after QUERY_STRING seconds, for any request (a slow one)
.../slowhead  the 101 head in two writes 50 ms apart, "hi", then the echo (any
              prefix: a [[route]]'s)
/accel        a WSGI 200 with X-Accel-Redirect, socket untouched
/accel-socket a 200 with X-Accel-Redirect and X-Accel-Limit-Rate written on the socket
/accel101     a 101 with X-Accel-Redirect and X-Accel-Limit-Rate, "hi", then the echo
/socket200    a 200 with a 5-byte body written on the socket
/badhead      a 200 written on the socket with QUERY_STRING's framing: dupcl (two
              Content-Lengths), pluscl (+2), tecl (Transfer-Encoding and
              Content-Length)
/stuck        the head and "hi", then 60 s asleep, the socket ignored (a hung thread)
"""
import base64
import hashlib
import os
import socket
import sys
import time

import ws_echo

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

KEPT = []


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


def _socket_facts(environ, s):
    facts = {
        "same": environ["gunicorn.socket"] is environ["werkzeug.socket"],
        "unix": s.family == socket.AF_UNIX,
        "blocking": s.getblocking(),
        "upgrade": environ.get("HTTP_UPGRADE", ""),
        "connection": environ.get("HTTP_CONNECTION", ""),
        "input": environ["wsgi.input"].read(),
        "query": environ["QUERY_STRING"],
    }
    return " ".join(f"{k}={v!r}" for k, v in facts.items()).encode() + b"\n"


def _echo(s):
    while True:
        data = s.recv(65536)
        if not data:
            break
        s.sendall(data)


BAD_FRAMING = {
    "dupcl": b"Content-Length: 2\r\nContent-Length: 3\r\n",
    "pluscl": b"Content-Length: +2\r\n",
    "tecl": b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
}
ORDERS = b"X-Accel-Redirect: /internal/secret.txt\r\nX-Accel-Limit-Rate: 10\r\n"


def _abuse(environ, s, path):
    """The routes of tests/websocket_abuse.rs that write on the socket."""
    if path.endswith("/slowhead"):
        head = _head(environ)
        s.sendall(head[:20])
        time.sleep(0.05)
        s.sendall(head[20:] + b"hi")
        _echo(s)
    elif path == "/accel-socket":
        s.sendall(b"HTTP/1.1 200 OK\r\n" + ORDERS + b"Content-Length: 2\r\n\r\nhi")
    elif path == "/accel101":
        s.sendall(_head(environ, ORDERS) + b"hi")
        _echo(s)
    elif path == "/socket200":
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    elif path == "/badhead":
        framing = BAD_FRAMING[environ["QUERY_STRING"]]
        s.sendall(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\nhi")
    elif path == "/stuck":
        s.sendall(_head(environ) + b"hi")
        time.sleep(60)
    elif path == "/partial":
        s.sendall(b"HTTP/1.1 1")
        time.sleep(60)
    elif path == "/apphalf":
        # Its Close frame (1000), then half-closed: it still reads the client's reply.
        s.sendall(_head(environ) + b"\x88\x02\x03\xe8")
        s.shutdown(socket.SHUT_WR)
        got = 0
        while True:
            data = s.recv(4096)
            if not data:
                break
            got += len(data)
        print(f"apphalf got {got}", file=sys.stderr, flush=True)


def _flood(s):
    s.settimeout(2)
    sent = 0
    chunk = b"x" * 65536
    try:
        while sent < 256 * 1024 * 1024:
            sent += s.send(chunk)
    except socket.timeout:
        pass
    print(f"flooded {sent}", file=sys.stderr, flush=True)


def _kept(environ, s):
    path = environ["PATH_INFO"]
    s.sendall(_head(environ))
    if path == "/raise":
        raise ConnectionError("the peer went away")
    if path == "/fail":
        raise ValueError("an app bug after taking the socket")
    if path == "/missing":
        open("/nonexistent/ferricorn-test")
    KEPT.append(s)
    s.sendall(_socket_facts(environ, s))
    _echo(s)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        return ws_echo.app(environ, start_response)
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 5))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/accel":
        start_response("200 OK", [("X-Accel-Redirect", "/internal/secret.txt"),
                                  ("Content-Length", "0")])
        return [b""]
    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"socket=%r" % ("gunicorn.socket" in environ)]
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
    elif path.startswith("/idle/"):
        s.sendall(_head(environ))
        _echo(s)
    elif path in ("/kept", "/raise", "/fail", "/missing"):
        _kept(environ, s)
    elif path == "/flood":
        s.sendall(_head(environ))
        _flood(s)
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
    elif path.endswith("/slowhead") or path in (
            "/accel-socket", "/accel101", "/socket200", "/badhead", "/stuck",
            "/partial", "/apphalf"):
        _abuse(environ, s, path)
    elif path == "/huge":
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nX-Long: " + b"a" * 70000)
        _echo(s)
    start_response("200 OK", [])
    return []
