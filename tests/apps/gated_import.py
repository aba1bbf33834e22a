"""sup_app, whose import takes a ticket: the file named by $GATED_IMPORT, which it
removes. Without one it touches that name + ".started" and waits until the test
writes one: a test holds a reload under way with it, one worker at a time."""
import os
import time


def _take_ticket():
    try:
        os.remove(os.environ["GATED_IMPORT"])
        return True
    except FileNotFoundError:
        return False


if not _take_ticket():
    open(os.environ["GATED_IMPORT"] + ".started", "w").close()
    while not _take_ticket():
        time.sleep(0.02)

from sup_app import app  # noqa: E402,F401
