"""Server hooks for tests/hooks.rs: each hook appends "NAME PID DETAIL" to
$HOOKS_LOG; when_ready raises after its line, to show a raising hook is only logged.
"""
import os


def _log(name, detail=""):
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"{name} {os.getpid()} {detail}\n")


def on_starting(server):
    _log("on_starting", f"master={server.pid}")


def when_ready(server):
    _log("when_ready", f"master={server.pid}")
    raise RuntimeError("when_ready refuses, on purpose")


def post_fork(server, worker):
    _log("post_fork", f"worker={worker.pid} master={server.pid}")


def post_worker_init(worker):
    _log("post_worker_init", f"worker={worker.pid}")


def worker_exit(server, worker):
    _log("worker_exit", f"worker={worker.pid}")


def child_exit(server, worker):
    _log("child_exit", f"worker={worker.pid}")


def pre_request(worker, req):
    _log("pre_request", f"{req.method} {req.path}")


def post_request(worker, req, environ, resp):
    _log("post_request", f"{req.method} {req.path} {resp.status_code}")
