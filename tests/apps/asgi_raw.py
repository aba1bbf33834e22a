"""A raw ASGI 3 app (no framework) for tests/asgi.rs.

/               "hello"
/scope          the scope's fields as JSON (bytes as latin-1 text)
/body           reads the whole body (in several more_body chunks); answers its
                size, chunk count and sha256
/stream         one chunk, then waits until /release is hit, then the last chunk
/release        lets /stream finish
/sleep          await asyncio.sleep(1), then "slept"
/sse            chunks every 50 ms until the client goes: records http.disconnect
/disconnects    how many http.disconnect /sse saw
/state          the lifespan state's "started" value
/raise          raises before the response head (a 500; the worker lives on)
/raise-after    sends the head and a chunk, waits for /release, raises (the
                response is cut)
/start-then-raise  http.response.start, then an exception (the head is held: 500)
/pathsend/P     http.response.pathsend of P (a missing file raises OSError: 500)
/slow-stream    one chunk, a second's sleep, the last chunk (for the drain)
/pid            the worker's pid

Lifespan: startup puts {"started": "yes"} in the state; with FAIL_STARTUP set in
the environment it answers lifespan.startup.failed instead. Shutdown writes
"shutdown" to the file named by SHUTDOWN_FILE, if set.
"""

import asyncio
import hashlib
import json
import os

RELEASE = None
DISCONNECTS = 0


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if os.environ.get("FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "no database here"})
                return
            scope["state"]["started"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            path = os.environ.get("SHUTDOWN_FILE")
            if path:
                with open(path, "w") as f:
                    f.write("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send, body, status=200, content_type=b"text/plain"):
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def text(b):
    return b.decode("latin-1")


async def app(scope, receive, send):
    global RELEASE, DISCONNECTS
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    path = scope["path"]
    if path == "/":
        return await respond(send, b"hello")
    if path.endswith("/scope"):
        facts = {k: scope[k] for k in ("type", "http_version", "method", "scheme", "path", "root_path")}
        facts["asgi"] = scope["asgi"]
        facts["raw_path"] = text(scope["raw_path"])
        facts["query_string"] = text(scope["query_string"])
        facts["headers"] = [[text(k), text(v)] for k, v in scope["headers"]]
        facts["client"] = list(scope["client"]) if scope["client"] else None
        facts["server"] = list(scope["server"])
        facts["extensions"] = sorted(scope.get("extensions", {}))
        return await respond(send, json.dumps(facts).encode(), content_type=b"application/json")
    if path == "/body":
        h, size, chunks = hashlib.sha256(), 0, 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            h.update(message["body"])
            size += len(message["body"])
            chunks += 1
            if not message.get("more_body"):
                break
        return await respond(send, f"{size} {chunks} {h.hexdigest()}".encode())
    if path == "/stream":
        RELEASE = asyncio.Event()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        await RELEASE.wait()
        await send({"type": "http.response.body", "body": b"last\n"})
        return
    if path == "/release":
        if RELEASE is not None:
            RELEASE.set()
        return await respond(send, b"released")
    if path == "/sleep":
        await asyncio.sleep(1)
        return await respond(send, b"slept")
    if path == "/sse":
        return await sse(receive, send)
    if path == "/disconnects":
        return await respond(send, str(DISCONNECTS).encode())
    if path == "/state":
        return await respond(send, scope.get("state", {}).get("started", "none").encode())
    if path == "/raise":
        raise ValueError("boom before the head")
    if path == "/raise-after":
        RELEASE = asyncio.Event()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await RELEASE.wait()
        raise ValueError("boom after the head")
    if path == "/start-then-raise":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom between start and body")
    if path.startswith("/pathsend/"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": path[len("/pathsend"):]})
        return
    if path == "/slow-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        await asyncio.sleep(1)
        await send({"type": "http.response.body", "body": b"last\n"})
        return
    if path == "/pid":
        return await respond(send, str(os.getpid()).encode())
    return await respond(send, b"not found", status=404)


async def sse(receive, send):
    global DISCONNECTS
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    async def watch():
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    n = 0
    try:
        while not watcher.done():
            await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
            n += 1
            await asyncio.wait([watcher], timeout=0.05)
    except OSError:
        await watcher
    DISCONNECTS += 1
    return None


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]
