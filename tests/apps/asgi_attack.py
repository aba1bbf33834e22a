"""A raw ASGI 3 app (no framework) that misbehaves, for tests/asgi_attack.rs: a
buggy app must cost only its own request, never the worker or other requests.

/pid              the worker's pid
/swallow?S        awaits a long sleep and swallows the CancelledError of its timeout,
                  then sleeps on, S seconds (60 by default): a task that ignores
                  cancellation
/stubborn?S       swallows every CancelledError for S seconds (60 by default)
/swallowed        how many /swallow tasks saw their CancelledError
/slow?S           sleeps S seconds, then answers "slow done"
/tick?N           a streamed body: N chunks "tick\n", one every 0.5 s (never silent)
/unread           reads nothing of its body until /release, then all of it: answers its size
/release          lets every /unread answer
/waiting          how many /unread wait for /release
/exit             raises SystemExit (sys.exit() in a view)
/interrupt        raises KeyboardInterrupt after its head went out
/header-ctl       a header value with a control character (\x01): refused (500)
/spawn-exit       starts a task of its own that raises SystemExit, answers "spawned"
/spawn-interrupt  schedules a callback that raises KeyboardInterrupt, answers "spawned"
/scope, /any...   the scope's path, raw_path, query_string, client, headers as JSON
"""
import asyncio
import json
import os

_swallowed = 0
_release = None
_waiting = 0


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


async def _spawned_exit():
    await asyncio.sleep(0.05)
    raise SystemExit(3)


def _spawned_interrupt():
    raise KeyboardInterrupt


# The app's own tasks, held as asyncio's documentation says to.
_background = set()


async def app(scope, receive, send):
    global _swallowed, _release, _waiting
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if _release is None:
        _release = asyncio.Event()
    path = scope["path"]
    query = scope["query_string"].decode()
    if path == "/pid":
        await text(send, str(os.getpid()))
    elif path == "/swallow":
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            _swallowed += 1
        await asyncio.sleep(float(query or 60))
        await text(send, "swallowed")
    elif path == "/stubborn":
        loop = asyncio.get_running_loop()
        end = loop.time() + float(query or 60)
        while loop.time() < end:
            try:
                await asyncio.sleep(end - loop.time())
            except asyncio.CancelledError:
                _swallowed += 1
        await text(send, "stubborn")
    elif path == "/exit":
        raise SystemExit(3)
    elif path == "/interrupt":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begun", "more_body": True})
        raise KeyboardInterrupt
    elif path == "/spawn-exit":
        task = asyncio.get_running_loop().create_task(_spawned_exit())
        _background.add(task)
        task.add_done_callback(_background.discard)
        await text(send, "spawned")
    elif path == "/spawn-interrupt":
        asyncio.get_running_loop().call_later(0.05, _spawned_interrupt)
        await text(send, "spawned")
    elif path == "/header-ctl":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"b\x01c")]})
        await send({"type": "http.response.body", "body": b"x"})
    elif path == "/swallowed":
        await text(send, str(_swallowed))
    elif path == "/slow":
        await asyncio.sleep(float(query))
        await text(send, "slow done")
    elif path == "/tick":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(int(query)):
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"end\n"})
    elif path == "/unread":
        _waiting += 1
        await _release.wait()
        _waiting -= 1
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await text(send, str(size))
    elif path == "/waiting":
        await text(send, str(_waiting))
    elif path == "/release":
        _release.set()
        _release = asyncio.Event()
        await text(send, "released")
    elif path.startswith("/scope") or path.startswith("/any"):
        client = scope["client"]
        await text(
            send,
            json.dumps(
                {
                    "path": scope["path"],
                    "raw_path": scope["raw_path"].decode("latin-1"),
                    "query_string": scope["query_string"].decode("latin-1"),
                    "root_path": scope["root_path"],
                    "client": list(client) if client else None,
                    "scheme": scope["scheme"],
                    "server": list(scope["server"]) if scope["server"] else None,
                    "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
                    "http_version": scope["http_version"],
                }
            ),
        )
    else:
        await text(send, "not found", 404)
