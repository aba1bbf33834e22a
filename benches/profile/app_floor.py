"""app_floor.py N: the Django view called N times in one process, without a
server: a PEP 3333 environ, start_response, the body iterated and closed. The
floor of CPU per request that no server can go under. Run in the site's directory."""
import os
import sys
import time
from wsgiref.util import setup_testing_defaults

sys.path.insert(0, os.getcwd())
from djsite.wsgi import application  # noqa: E402

n = int(sys.argv[1])


def start_response(status, headers, exc_info=None):
    return lambda data: None


def once():
    environ = {"HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    body = application(environ, start_response)
    for _ in body:
        pass
    if hasattr(body, "close"):
        body.close()


for _ in range(200):
    once()
t0 = time.process_time()
for _ in range(n):
    once()
cpu = time.process_time() - t0
print(f"the view alone: {cpu / n * 1e6:.0f} µs/request ({n} calls)")
