"""Runs a C WSGI server (the ceiling in the benches) with WORKERS processes on one port:

    python c_server.py bjoern|fastwsgi MODULE:CALLABLE HOST PORT WORKERS

bjoern listens once with SO_REUSEPORT and forks (each process runs its own event
loop); fastwsgi forks its own workers. The app is imported from the working
directory, as the other servers do with --chdir. run.py stops the process group.
"""

import importlib
import os
import sys


def load(spec):
    module, name = spec.split(":", 1)
    return getattr(importlib.import_module(module), name)


def run_bjoern(app, host, port, workers):
    import bjoern

    bjoern.listen(app, host, port, reuse_port=True)
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    bjoern.run()


def run_fastwsgi(app, host, port, workers):
    import fastwsgi

    fastwsgi.run(wsgi_app=app, host=host, port=port, workers=workers)


def main():
    server, spec, host, port, workers = sys.argv[1:6]
    sys.path.insert(0, os.getcwd())
    run = {"bjoern": run_bjoern, "fastwsgi": run_fastwsgi}[server]
    run(load(spec), host, int(port), int(workers))


if __name__ == "__main__":
    main()
