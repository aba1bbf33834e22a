"""A raw ASGI 3 app (no framework) for tests/asgi_websocket.rs and the Autobahn
run against an ASGI echo: every WebSocket route of the `websocket` scope, and a
few `http` ones.

/echo             accepts, echoes every message (text as text, bytes as bytes)
/close/<code>     accepts, takes one message, closes with <code> and that message
                  as the reason
/sub              accepts with the subprotocol "v2.chat" when the client offers
                  it (none otherwise), then sends the scope as JSON and echoes
/deny             refuses with the denial response: 401, WWW-Authenticate, a body
/reject           websocket.close before accepting (a 403)
/bad-sub          accepts with a subprotocol the client did not offer: the accept
                  raises, the app reports the error and closes (a 403)
/server-close     accepts, sends "closing", closes with 4001 "server says bye"
/watch            accepts, then reads until websocket.disconnect and prints
                  "asgi_ws: disconnect CODE REASON" on stderr
/asleep           accepts and never reads (pings still get their pongs)
/raise            accepts, then raises (the client sees 1011)
/flood            accepts, then sends 64 KiB messages until the client closes;
                  GET /flood/sent (http) says how many bytes so far
/wait-for         accepts, echoes, but waits for each message in
                  asyncio.wait_for(receive(), 1 ms), so many a wait times out just
                  as its message comes (the message must be kept, counted once)
/exit             accepts, then calls sys.exit() (the client sees 1011; the
                  worker lives on)
/two-readers      accepts; while one task awaits receive(), calls receive() again and
                  sends what became of it, then sends "first got <text>" once the
                  first gets the client's message
anything else (http): 200 "asgi_ws"; GET /worker-pid: the worker's pid
"""
import asyncio
import json
import os
import sys

SENT = {"flood": 0}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "http":
        return await http(scope, receive, send)
    assert (await receive())["type"] == "websocket.connect"
    path = scope["path"]
    route = ROUTES.get(path)
    if route is None and path.startswith("/close/"):
        route = close_with
    if route is None:
        route = echo
    await route(scope, receive, send)


async def lifespan(receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def http(scope, receive, send):
    body = b"asgi_ws"
    if scope["path"] == "/flood/sent":
        body = str(SENT["flood"]).encode()
    elif scope["path"] == "/worker-pid":
        body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def echo(scope, receive, send):
    await send({"type": "websocket.accept"})
    await echo_loop(receive, send)


async def echo_loop(receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})


async def close_with(scope, receive, send):
    code = int(scope["path"].rsplit("/", 1)[1])
    await send({"type": "websocket.accept"})
    msg = await receive()
    reason = msg.get("text") or ""
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def sub(scope, receive, send):
    chosen = "v2.chat" if "v2.chat" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen,
                "headers": [(b"x-app", b"asgi_ws")]})
    shown = {k: scope[k] for k in ("type", "scheme", "http_version", "path",
                                   "query_string", "subprotocols", "root_path")}
    shown["query_string"] = shown["query_string"].decode()
    shown["extensions"] = sorted(scope.get("extensions", {}))
    shown["has_key"] = any(n == b"sec-websocket-key" for n, _ in scope["headers"])
    await send({"type": "websocket.send", "text": json.dumps(shown)})
    await echo_loop(receive, send)


async def deny(scope, receive, send):
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"www-authenticate", b'Bearer realm="asgi_ws"'),
                            (b"content-type", b"text/plain"),
                            (b"content-length", b"9")]})
    await send({"type": "websocket.http.response.body", "body": b"no ",
                "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry\n"})


async def reject(scope, receive, send):
    await send({"type": "websocket.close", "code": 1008})


async def bad_sub(scope, receive, send):
    try:
        await send({"type": "websocket.accept", "subprotocol": "never-offered"})
    except ValueError as e:
        print(f"asgi_ws: accept refused: {e}", file=sys.stderr, flush=True)
    await send({"type": "websocket.close"})


async def server_close(scope, receive, send):
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "closing"})
    await send({"type": "websocket.close", "code": 4001, "reason": "server says bye"})
    msg = await receive()
    print(f"asgi_ws: after close {msg['type']} {msg.get('code')}", file=sys.stderr, flush=True)


async def watch(scope, receive, send):
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            print(f"asgi_ws: disconnect {msg['code']} {msg.get('reason', '')}",
                  file=sys.stderr, flush=True)
            return


async def asleep(scope, receive, send):
    await send({"type": "websocket.accept"})
    await asyncio.sleep(3600)


async def raises(scope, receive, send):
    await send({"type": "websocket.accept"})
    raise ValueError("asgi_ws: this WebSocket handler fails")


async def flood(scope, receive, send):
    await send({"type": "websocket.accept"})
    chunk = b"f" * 65536
    try:
        while True:
            await send({"type": "websocket.send", "bytes": chunk})
            SENT["flood"] += len(chunk)
    except OSError:
        print("asgi_ws: flood ended", file=sys.stderr, flush=True)


async def wait_for(scope, receive, send):
    await send({"type": "websocket.accept"})
    while True:
        try:
            msg = await asyncio.wait_for(receive(), 0.001)
        except asyncio.TimeoutError:
            continue
        if msg["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": msg["text"]})


async def two_readers(scope, receive, send):
    await send({"type": "websocket.accept"})
    first = asyncio.ensure_future(receive())
    await asyncio.sleep(0)  # the first awaits its message now
    try:
        await receive()
        said = "second receive() served"
    except RuntimeError as e:
        said = f"second receive() refused: {e}"
    await send({"type": "websocket.send", "text": said})
    msg = await first
    await send({"type": "websocket.send", "text": "first got " + msg.get("text", msg["type"])})
    await receive()


async def exits(scope, receive, send):
    await send({"type": "websocket.accept"})
    sys.exit("asgi_ws: this WebSocket handler calls sys.exit()")


ROUTES = {
    "/wait-for": wait_for,
    "/exit": exits,
    "/two-readers": two_readers,
    "/echo": echo,
    "/sub": sub,
    "/deny": deny,
    "/reject": reject,
    "/bad-sub": bad_sub,
    "/server-close": server_close,
    "/watch": watch,
    "/asleep": asleep,
    "/raise": raises,
    "/flood": flood,
}
