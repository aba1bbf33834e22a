"""Server hooks (``--hooks`` / ``[python] hooks``), gunicorn's names and signatures.

The hooks file (a path ending in ``.py``) or module defines any of:

    on_starting(server)                         helper process, before workers start
    when_ready(server)                          helper process, once workers serve
    child_exit(server, worker)                  helper process, after a worker exited
    post_fork(server, worker)                   worker, before it imports the app
                                                (with preload: right after the fork)
    post_worker_init(worker)                    worker, after the app is imported
    worker_exit(server, worker)                 worker, as it exits after a drain
    pre_request(worker, req)                    worker, before each request
    post_request(worker, req, environ, resp)    worker, after each response's last byte

``server`` has ``pid`` (the master's) and ``log``; ``worker`` has ``pid``, ``age``
(seconds since it started) and ``log``; ``req`` has ``method``, ``path``, ``query``,
``uri``, ``version`` and ``headers`` (a list of ``(NAME, value)``); ``resp`` has
``status`` (``"200 OK"``), ``status_code`` and ``headers``. The master is not
Python, so its hooks run in a small helper interpreter (``ferricorn.hooks``).

A hook that raises is logged with its traceback, and the server carries on.
With ``PROMETHEUS_MULTIPROC_DIR`` set, a worker's files are marked dead after it
exits (``prometheus_client.multiprocess.mark_process_dead``), hooks or not.
"""

import importlib
import importlib.util
import logging
import os
import sys
import time
import traceback
import types

_hooks = types.SimpleNamespace()
_server = types.SimpleNamespace(pid=0, log=logging.getLogger("ferricorn"))
_worker = types.SimpleNamespace(pid=0, age=0.0, log=logging.getLogger("ferricorn"))
_started = time.monotonic()


def configure(spec, master_pid):
    """Loads the hooks file or module ``spec`` (may be empty: no user hooks)."""
    global _hooks
    _server.pid = master_pid
    _worker.pid = os.getpid()
    if not spec:
        return
    try:
        if spec.endswith(".py") or os.sep in spec:
            path = os.path.abspath(spec)
            loader_spec = importlib.util.spec_from_file_location("ferricorn_hooks", path)
            if loader_spec is None:
                raise ImportError(f"cannot load hooks from {path}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
        _hooks = module
    except BaseException:
        _report(f"the hooks {spec!r} did not load; running without them")


def _report(what):
    """Logs the exception being handled: one ERROR record in the master's error
    log, its traceback included (not a line each)."""
    from ferricorn._worker import log_error

    sys.stderr.flush()  # what the hook printed comes first
    log_error(f"{what}:\n{traceback.format_exc().rstrip()}")


def call(name, *args):
    """Calls hook ``name`` if defined; what it raises is logged, not raised."""
    hook = getattr(_hooks, name, None)
    if hook is None:
        return
    try:
        hook(*args)
    except BaseException:
        _report(f"hook {name} raised")


# --------------------------------------------------------------------- the worker


def worker_event(name):
    """``post_fork`` or ``worker_exit``, in a worker."""
    _worker.pid = os.getpid()
    _worker.age = time.monotonic() - _started
    call(name, _server, _worker)


def worker_ready(app, interface="wsgi"):
    """``post_worker_init``; returns the app, wrapped for the request hooks if any.

    The request hooks wrap a WSGI app only: an ASGI worker runs its app unwrapped
    and says so once.
    """
    _worker.pid = os.getpid()
    call("post_worker_init", _worker)
    pre = getattr(_hooks, "pre_request", None)
    post = getattr(_hooks, "post_request", None)
    if pre is None and post is None:
        return app
    if interface != "wsgi":
        from ferricorn._worker import log_error

        log_error("hooks: pre_request and post_request are not run for ASGI apps (-k asgi)")
        return app
    return _RequestHooks(app)


def _request(environ):
    headers = [
        (k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")
    ]
    query = environ.get("QUERY_STRING", "")
    path = environ.get("PATH_INFO", "")
    return types.SimpleNamespace(
        method=environ.get("REQUEST_METHOD", ""),
        path=path,
        query=query,
        uri=path + ("?" + query if query else ""),
        version=environ.get("SERVER_PROTOCOL", ""),
        headers=headers,
    )


class _RequestHooks:
    """The app with ``pre_request`` before it and ``post_request`` once the
    response is over (its body iterated and closed)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        req = _request(environ)
        call("pre_request", _worker, req)
        resp = types.SimpleNamespace(status="", status_code=0, headers=[])

        def seen(status, headers, exc_info=None):
            resp.status, resp.headers = status, headers
            resp.status_code = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, seen)
        except BaseException:
            call("post_request", _worker, req, environ, resp)
            raise
        return _Body(body, lambda: call("post_request", _worker, req, environ, resp))


class _Body:
    def __init__(self, body, after):
        self.body, self.after = body, after

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.after()


# --------------------------------------------------------------------- the master


def master_event(name, pid=0):
    """``on_starting``, ``when_ready`` or ``child_exit`` in the helper process."""
    if name == "child_exit":
        _mark_prometheus_dead(pid)
        call("child_exit", _server, types.SimpleNamespace(pid=pid, age=0.0, log=_server.log))
    else:
        call(name, _server)


def _mark_prometheus_dead(pid):
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    try:
        multiprocess.mark_process_dead(pid)
    except BaseException:
        _report(f"prometheus_client could not mark worker {pid} dead")
