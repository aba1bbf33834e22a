"""app_floor.py APP N [CONCURRENCY]: an ASGI app called N times in one process, without
a server, on a uvloop loop: an `http` scope as a server builds it, `receive` giving the
empty body then waiting, `send` dropping the messages; CONCURRENCY requests in flight at a time (64,
like wrk -c64). The floor of CPU per request that no server goes under (process CPU,
every thread: Django's sync_to_async hops run on asgiref's executor thread).

    cd benches/asgi/apps && ../../../target/asgi-bench-venv/bin/python ../app_floor.py asgi_hello:app 200000
    cd benches/asgi/apps/djasync && ../../../../target/asgi-bench-venv/bin/python ../../app_floor.py djasync.asgi:application 20000"""
import asyncio
import importlib
import os
import sys
import time

import uvloop

sys.path.insert(0, os.getcwd())
module, _, attr = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), attr)
n = int(sys.argv[2])
concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 64


def scope():
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/",
        "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }


def receiver():
    """The empty request body, then (as a server does once the body is read) a wait
    for a disconnect that never comes; Django cancels that wait after its response."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.get_running_loop().create_future()

    return receive


async def send(message):
    pass


async def worker(count):
    for _ in range(count):
        await app(scope(), receiver(), send)


async def run(total):
    per = total // concurrency
    await asyncio.gather(*(worker(per) for _ in range(concurrency)))
    return per * concurrency


async def main():
    await run(max(concurrency, n // 20))  # warm-up
    t0, w0 = time.process_time(), time.perf_counter()
    done = await run(n)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    print(f"{sys.argv[1]} alone, {concurrency} in flight: {cpu / done * 1e6:.0f} µs CPU/request, "
          f"{done / wall:,.0f} requests/s on one loop ({done} calls)")


uvloop.run(main())
