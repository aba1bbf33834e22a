"""A raw ASGI 3 app (no framework) for the master's side of ASGI workers,
tests/asgi_master.rs:

/pid              the worker's pid
/sleep            awaits asyncio.sleep(30) (a timeout cancels it)
/event-then-sleep one server-sent event, then the same sleep
/block            time.sleep(30): blocks the event loop
/cancelled        how many /sleep tasks were cancelled so far
/stream           an endless body, 64 KiB per send(), counting what it produced
/produced         bytes /stream produced so far
/file?P           http.response.pathsend of the absolute path P, Content-Length its size
/wrong-length?P   pathsend of P with a Content-Length that is not its size
/replaced?P       the same as /file, then P is replaced (same size, another inode) before the
                  worker's frames go out
/accel?U          X-Accel-Redirect: U, with a body of its own
/no-pathsend      whether the scope offered the extension

`asgi_master:wsgi` is a WSGI app, for the interface mismatch.
"""
import asyncio
import os
import time
import urllib.parse

_cancelled = 0
_produced = 0


async def text(send, body, status=200):
    body = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def pathsend(scope, send, path):
    size = os.stat(path).st_size
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(size).encode()),
                (b"x-app", b"pathsend"),
            ],
        }
    )
    await send({"type": "http.response.pathsend", "path": path})


async def app(scope, receive, send):
    global _cancelled, _produced
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = urllib.parse.unquote(scope["query_string"].decode())
    if path == "/pid":
        await text(send, str(os.getpid()))
    elif path == "/sleep":
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            _cancelled += 1
            raise
        await text(send, "slept")
    elif path == "/event-then-sleep":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            _cancelled += 1
            raise
    elif path == "/block":
        time.sleep(30)
        await text(send, "blocked")
    elif path == "/cancelled":
        await text(send, str(_cancelled))
    elif path == "/produced":
        await text(send, str(_produced))
    elif path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        chunk = b"x" * 65536
        while True:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            _produced += len(chunk)
    elif path == "/file":
        await pathsend(scope, send, query)
    elif path == "/wrong-length":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"3")],
            }
        )
        await send({"type": "http.response.pathsend", "path": query})
    elif path == "/replaced":
        await pathsend(scope, send, query)
        # Still in this loop turn: the worker's frames are not out yet.
        other = query + ".new"
        with open(query, "rb") as f, open(other, "wb") as g:
            g.write(f.read())
        os.replace(other, query)
    elif path == "/accel":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"x-accel-redirect", query.encode()),
                    (b"content-disposition", b"attachment"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"the app's body"})
    elif path == "/no-pathsend":
        offered = "http.response.pathsend" in scope.get("extensions", {})
        await text(send, str(offered))
    else:
        await text(send, "not found", 404)


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"a WSGI app"]
