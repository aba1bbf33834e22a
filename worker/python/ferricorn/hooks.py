"""The master's hooks: ``python -m ferricorn.hooks SPEC [DIR...]``.

The ferricorn master is not Python, so ``on_starting``, ``when_ready`` and
``child_exit`` (see ``ferricorn._hooks``) run in this small helper, started by the
master on the app's interpreter, in the app's directory, with ``DIR``s (the
``--pythonpath`` ones) first on ``sys.path``. It reads one event a line on stdin
(``on_starting``, ``when_ready``, ``child_exit PID``), names each back on its stdout
once the hook returned (the master waits for ``on_starting``, as gunicorn runs it
before any worker), and exits when stdin closes. What hooks print goes to stderr,
which the master relays into its error log.
"""

import os
import sys

from ferricorn import _hooks, _worker


def main():
    args = sys.argv[1:]
    if args[:1] == ["--log-fd"]:
        # Our records (a hook's traceback) go to the master on this pipe, never
        # mixed with what hooks print on stderr.
        _worker.use_log_fd(int(args[1]))
        args = args[2:]
    spec, dirs = (args[0:1] or [""])[0], args[1:]
    if sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]
    sys.path[:0] = [os.path.abspath(d) for d in dirs] + [os.getcwd()]
    # stdout is the master's, for the acknowledgements only.
    done = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)
    _hooks.configure(spec, os.getppid())
    for line in sys.stdin:
        name, _, pid = line.strip().partition(" ")
        if name:
            _hooks.master_event(name, int(pid or 0))
            try:
                done.write(name + "\n")
                done.flush()
            except OSError:  # the master is gone
                return


if __name__ == "__main__":
    main()
