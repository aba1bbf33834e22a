"""A small app for the supervisor and edge tests.

/pid          the worker's pid
/sleep?s=N    sleeps N seconds, then answers
/crash        the worker dies (SIGKILL to itself) mid-request
/echo         echoes the body
"""
import os
import signal
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/sleep":
        seconds = float(query.split("=", 1)[1]) if "=" in query else 1.0
        time.sleep(seconds)
        body = b"slept"
    elif path == "/crash":
        os.kill(os.getpid(), signal.SIGKILL)
        body = b"unreachable"
    elif path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
