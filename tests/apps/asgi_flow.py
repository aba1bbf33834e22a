"""A raw ASGI app for tests/asgi_flow.rs: request bodies an app holds back (the
body window) and streams that never end under a drain (SSE).

- POST /hold: waits until GET /go, then reads its body and answers its length and
  sha256; GET /held: how many /hold requests wait.
- GET /sse: one event, then waits in receive() for http.disconnect.
- GET /tick: an event every 100 ms until send() raises.
- GET /pid: the worker's pid.
- lifespan: its shutdown appends "shutdown <pid>" to $FLOW_SHUTDOWN_FILE.
"""

import asyncio
import hashlib
import os

held = 0
go = None


async def text(send, body, status=200, more=False, kind=b"text/plain"):
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
    )
    await send({"type": "http.response.body", "body": body.encode(), "more_body": more})


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            path = os.environ.get("FLOW_SHUTDOWN_FILE")
            if path:
                with open(path, "a") as f:
                    f.write(f"shutdown {os.getpid()}\n")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hold(receive, send):
    global held
    held += 1
    try:
        await go.wait()
    finally:
        held -= 1
    digest = hashlib.sha256()
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        digest.update(message["body"])
        size += len(message["body"])
        if not message.get("more_body"):
            break
    await text(send, f"{size} {digest.hexdigest()}")


async def sse(receive, send):
    await text(send, "data: open\n\n", more=True, kind=b"text/event-stream")
    message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
    print(f"sse: http.disconnect in {os.getpid()}", flush=True)


async def tick(send):
    await text(send, "data: open\n\n", more=True, kind=b"text/event-stream")
    while True:
        await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})


async def app(scope, receive, send):
    global go
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if go is None:
        go = asyncio.Event()
    path = scope["path"]
    if path == "/hold":
        return await hold(receive, send)
    if path == "/go":
        go.set()
        return await text(send, "go")
    if path == "/held":
        return await text(send, str(held))
    if path == "/sse":
        return await sse(receive, send)
    if path == "/tick":
        return await tick(send)
    if path == "/pid":
        return await text(send, str(os.getpid()))
    await text(send, "not found", status=404)
