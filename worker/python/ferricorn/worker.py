"""A ferricorn worker process.

The ferricorn master starts it as ``python -m ferricorn.worker ARGS`` on the app's
own interpreter; it is not meant to be run by hand.
"""

import os
import sys

from ferricorn import _worker


def main():
    code = _worker.run(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Not sys.exit: finalising the interpreter would wait for the app's threads,
    # and the worker has already run atexit handlers after a clean drain.
    os._exit(code)


if __name__ == "__main__":
    main()
