"""A ferricorn worker process.

The ferricorn master starts it as ``python -m ferricorn.worker ARGS`` on the app's
own interpreter; it is not meant to be run by hand.
"""

import os
import sys

from ferricorn import _worker


def main():
    # `python -m` put the master's working directory first on sys.path; the app's
    # own directories (--chdir, then --pythonpath) are put there by the worker, as
    # gunicorn does, and nothing else.
    if sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]
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
