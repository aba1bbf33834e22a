"""sup_app, whose import waits until the file named by $GATED_IMPORT exists (it
touches that name + ".started" first): a test holds a reload under way with it."""
import os
import time

_gate = os.environ["GATED_IMPORT"]
open(_gate + ".started", "w").close()
while not os.path.exists(_gate):
    time.sleep(0.02)

from sup_app import app  # noqa: E402,F401
