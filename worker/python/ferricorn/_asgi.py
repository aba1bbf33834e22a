"""The ASGI worker's Python side: the event loop's creation (``--asgi-loop``,
``--threads``), the ``lifespan`` protocol (``--asgi-lifespan``), and ``guarded``,
which each request's coroutine runs in. The requests themselves are served by
``ferricorn._worker`` (Rust) on the loop made here.
"""

import asyncio
import traceback


async def guarded(coro):
    """Runs one request's ``app(scope, receive, send)``. asyncio lets a task's
    ``SystemExit`` or ``KeyboardInterrupt`` out of the loop, which would end the
    worker and every request it serves: here it is that request's failure (a 500,
    or a cut response), as uvicorn makes it."""
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as e:
        raise RuntimeError(f"the ASGI app raised {type(e).__name__}") from e


def _report(loop, context):
    """The loop's exception handler: asyncio's, but for a task's ``SystemExit`` or
    ``KeyboardInterrupt`` "never retrieved" when it is freed. asyncio lets both
    out of the loop, where the worker catches them (a request's own coroutine
    runs in ``guarded``): it logged that one already, with its traceback, and ran
    the loop on. An app may set its own handler."""
    exc = context.get("exception")
    if isinstance(exc, (SystemExit, KeyboardInterrupt)) and "future" in context:
        return
    loop.default_exception_handler(context)


def new_loop(kind, threads):
    """The worker's loop, set as the current one; returns (loop, name).

    ``auto`` takes uvloop when it imports, else asyncio's own loop. ``threads``
    sizes the default executor (``run_in_executor(None, ...)``,
    ``sync_to_async(thread_sensitive=False)``).
    """
    loop = None
    name = "asyncio"
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            loop = uvloop.new_event_loop()
            name = "uvloop"
    if loop is None:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_report)
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(
            ThreadPoolExecutor(threads, thread_name_prefix="asgi-executor")
        )
    return loop, name


class Lifespan:
    """One ``lifespan`` scope for this worker's loop.

    ``startup()`` returns None when the app is ready (or does not speak lifespan,
    in ``auto`` mode), else the failure as (message, traceback or ""). ``notes``
    gathers what the worker logs at info (lifespan unsupported) or as a warning.
    """

    def __init__(self, app, mode):
        self.app = app
        self.mode = mode
        self.state = {}
        self.supported = mode != "off"
        self.notes = []
        self._inbox = None
        self._startup = None
        self._shutdown = None
        self._task = None
        self._received = False
        self._error = None

    async def _receive(self):
        self._received = True
        return await self._inbox.get()

    async def _send(self, message):
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            waiter = self._startup
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            waiter = self._shutdown
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} for lifespan")
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def _main(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as e:  # noqa: BLE001 - reported to the waiters below
            self._error = e
        finally:
            for waiter in (self._startup, self._shutdown):
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def startup(self):
        if not self.supported:
            return None
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._startup = loop.create_future()
        self._shutdown = loop.create_future()
        self._task = loop.create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._startup
        if message is not None:
            if message["type"] == "lifespan.startup.complete":
                return None
            text = message.get("message") or "(no message)"
            return (f"ASGI lifespan startup failed: {text}", "")
        # The app ended (or raised) without answering startup.
        error = self._error
        if self.mode == "auto" and (error is None or not self._received):
            self.supported = False
            self.notes.append(("info", "ASGI 'lifespan' protocol appears unsupported"))
            return None
        if error is None:
            if self.mode == "auto":
                self.supported = False
                return None
            return ("ASGI lifespan startup: the app returned without answering", "")
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if self.mode == "auto":
            # The spec: a server must go on when lifespan fails after it began.
            self.supported = False
            self.notes.append(("warning", f"ASGI lifespan raised; going on without it\n{tb}"))
            return None
        return (f"ASGI lifespan startup raised: {error!r}", tb)

    async def shutdown(self):
        """Runs ``lifespan.shutdown``; returns a message to log, or None."""
        if not self.supported or self._task is None or self._task.done():
            return None
        await self._inbox.put({"type": "lifespan.shutdown"})
        message = await self._shutdown
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            return f"ASGI lifespan shutdown failed: {message.get('message', '')}"
        if self._error is not None:
            e = self._error
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            return f"ASGI lifespan shutdown raised\n{tb}"
        return None
