"""An app whose import takes SLOW_IMPORT_S seconds (default 60)."""
import os
import time

time.sleep(float(os.environ.get("SLOW_IMPORT_S", "60")))


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
