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
/chunks         10,000 chunks of 1 KiB, yielding to the loop between them
/chunks-sent    how many /chunks has sent so far
/flood          200 chunks of 64 KiB, noting when send() first had to wait
/executor       four run_in_executor jobs that need four threads: their names
/bad-header     a header value with CR LF (refused: 500)
/bad-status     status 1200 (refused: 500)
/hop-by-hop     framing fields the front owns (dropped) and one kept
/bytearray      a body given as a bytearray
/pid            the worker's pid
/listen-stream?N  N tasks await receive() until http.disconnect while the request's
                task streams 64 KiB chunks until send() raises (Django's and
                Starlette's listener for a disconnect beside a streaming response)
/listened       "H E W": listeners that heard http.disconnect, streams ended by
                send() raising, sends that had to wait (back-pressure)

`no_lifespan` is the same app raising on any scope but http.

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
CHUNKS_SENT = 0
LISTENED = {"heard": 0, "ended": 0, "waited": 0}


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
    if path == "/chunks":
        global CHUNKS_SENT
        CHUNKS_SENT = 0
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(10_000):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            CHUNKS_SENT += 1
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/listen-stream":
        return await listen_stream(receive, send, int(scope["query_string"] or b"1"))
    if path == "/listened":
        return await respond(send, "{heard} {ended} {waited}".format(**LISTENED).encode())
    if path == "/flood":
        return await flood(scope, send)
    if path == "/chunks-sent":
        return await respond(send, str(CHUNKS_SENT).encode())
    if path == "/executor":
        import threading

        # Four jobs that each wait for all four: they pass only on four threads.
        loop = asyncio.get_running_loop()
        barrier = threading.Barrier(4, timeout=10)

        def job():
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                return "fewer than 4 threads"
            return threading.current_thread().name

        names = await asyncio.gather(*(loop.run_in_executor(None, job) for _ in range(4)))
        return await respond(send, " ".join(sorted(names)).encode())
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nSet-Cookie: evil=1")]})
        return
    if path == "/bad-status":
        await send({"type": "http.response.start", "status": 1200, "headers": []})
        return
    if path == "/hop-by-hop":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close"), (b"X-Kept", b"yes")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path == "/bytearray":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": bytearray(b"from a bytearray")})
        return
    if path == "/pid":
        return await respond(send, str(os.getpid()).encode())
    return await respond(send, b"not found", status=404)


async def flood(scope, send):
    """200 chunks of 64 KiB; the first time send() hands back a future still
    pending (the worker's buffer to the master is full), "waited at K" goes to the
    file named by ?progress=."""
    from urllib.parse import parse_qs

    progress = parse_qs(scope["query_string"].decode())["progress"][0]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    waited = False
    for k in range(200):
        pending = send({"type": "http.response.body", "body": b"y" * 65536, "more_body": True})
        if not waited and isinstance(pending, asyncio.Future) and not pending.done():
            waited = True
            with open(progress, "w") as f:
                f.write(f"waited at {k}")
        await pending
    await send({"type": "http.response.body", "body": b""})


async def listen_stream(receive, send, listeners):
    async def listen():
        while (await receive())["type"] != "http.disconnect":
            pass
        LISTENED["heard"] += 1

    tasks = [asyncio.ensure_future(listen()) for _ in range(listeners)]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while True:
            pending = send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            if isinstance(pending, asyncio.Future) and not pending.done():
                LISTENED["waited"] += 1
            await pending
    except OSError:
        LISTENED["ended"] += 1
    await asyncio.gather(*tasks)


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


async def no_lifespan(scope, receive, send):
    """The app for http only: a lifespan scope raises at once, as Django's
    ASGIHandler does."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope {scope['type']}")
    return await app(scope, receive, send)


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]
