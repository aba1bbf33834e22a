"""djsite's async views, served under ASGI (tests/asgi_django.rs, issue 27):

- /async/json/: an async view's JSON (the worker's pid, whether it runs in a Task on
  the interpreter's main thread, the loop's class).
- /sse/<key>/: server-sent events, a StreamingHttpResponse over an async generator:
  `data: 0` at once, then waits until /sse/<key>/release/ is requested, then
  `data: 1` and the end. A stream ended early (the client left: Django cancels it on
  `http.disconnect`) is recorded, and /sse/<key>/state/ tells what happened to it.
- /slow/<key>/: sleeps an hour; /sse/<key>/state/ then says "cancelled" once the
  view's sleep was cancelled (a timeout), or "sleeping".
- /signals/: how many `request_started` and `request_finished` signals this process
  sent (gunicorn#3627: a server swallowing the cancellation of Django's
  disconnect listener loses `request_finished`, and with it the database cleanup).
"""
import asyncio
import os
import threading

from django.core.signals import request_finished, request_started
from django.http import JsonResponse, StreamingHttpResponse

RELEASE = {}
STATE = {}
SIGNALS = {"started": 0, "finished": 0}


def _counter(name):
    def count(sender, **kwargs):
        SIGNALS[name] += 1

    return count


request_started.connect(_counter("started"), weak=False)
request_finished.connect(_counter("finished"), weak=False)


def _release(key):
    return RELEASE.setdefault(key, asyncio.Event())


async def async_json(request):
    return JsonResponse(
        {
            "view": "async",
            "pid": os.getpid(),
            "in_task": asyncio.current_task() is not None,
            "main_thread": threading.current_thread() is threading.main_thread(),
            "loop": type(asyncio.get_running_loop()).__module__,
        }
    )


async def events(key):
    STATE[key] = "streaming"
    try:
        yield "data: 0\n\n"
        await _release(key).wait()
        yield "data: 1\n\n"
        STATE[key] = "done"
    except (asyncio.CancelledError, GeneratorExit):
        STATE[key] = "disconnected"
        raise
    finally:
        RELEASE.pop(key, None)


async def sse(request, key):
    response = StreamingHttpResponse(events(key), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


async def sse_release(request, key):
    _release(key).set()
    return JsonResponse({"released": key})


async def sse_state(request, key):
    return JsonResponse({"state": STATE.get(key, "unknown")})


async def signals(request):
    return JsonResponse(SIGNALS)


async def slow(request, key):
    STATE[key] = "sleeping"
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        STATE[key] = "cancelled"
        raise
    return JsonResponse({"slept": key})
