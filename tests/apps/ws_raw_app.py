"""Upgrade requests as gunicorn apps see them, for tests/worker_socket.rs: the app
takes environ["gunicorn.socket"], writes its own 101 head, reports what it got,
then echoes until the peer shuts its side.

/echo   the head, one report line, then an echo; the socket object is kept in
        KEPT (an app may hold it), so only the worker's close() ends the stream
/raise  the head, then ConnectionError (how a WebSocket library ends)
/fail   the head, then ValueError (an app bug: logged with its traceback)
/missing  the head, then FileNotFoundError: an OSError, but an app bug too
/plain  never touches the socket: an ordinary 200
"""
import socket

KEPT = []


def _head(sock):
    sock.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )


def _report(environ, sock):
    facts = {
        "same": environ["gunicorn.socket"] is environ["werkzeug.socket"],
        "unix": sock.family == socket.AF_UNIX,
        "blocking": sock.getblocking(),
        "upgrade": environ.get("HTTP_UPGRADE", ""),
        "connection": environ.get("HTTP_CONNECTION", ""),
        "input": environ["wsgi.input"].read(),
        "query": environ["QUERY_STRING"],
    }
    return " ".join(f"{k}={v!r}" for k, v in facts.items()).encode() + b"\n"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/plain":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"socket=%r" % ("gunicorn.socket" in environ)]
    sock = environ["gunicorn.socket"]
    _head(sock)
    if path == "/raise":
        raise ConnectionError("the peer went away")
    if path == "/fail":
        raise ValueError("an app bug after taking the socket")
    if path == "/missing":
        open("/nonexistent/ferricorn-test")
    KEPT.append(sock)
    sock.sendall(_report(environ, sock))
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)
    start_response("200 OK", [])
    return []
