"""``python -m ferricorn ARGS``: the ``ferricorn`` command, as ``python -m gunicorn``.

The server is not Python: the wheel installs its binary into the environment's
scripts directory (a venv's ``bin/``), next to this interpreter. This replaces the
Python process with it, with the same arguments, so signals, the exit status and
the pid are the server's own (systemd, containers and shells see no wrapper).
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig

NAME = "ferricorn"


def candidates() -> list[str]:
    """Where the installer put the binary: the scripts directory of this
    interpreter's environment, or the user's (``pip install --user``)."""
    dirs = [sysconfig.get_path("scripts")]
    package = os.path.dirname(os.path.abspath(__file__))
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and package.startswith(os.path.abspath(user_site) + os.sep):
        dirs.insert(0, sysconfig.get_path("scripts", f"{os.name}_user"))
    return [os.path.join(d, NAME) for d in dirs]


def main() -> None:
    paths = candidates()
    for path in paths:
        if os.access(path, os.X_OK):
            try:
                os.execv(path, [path, *sys.argv[1:]])
            except OSError as e:
                sys.exit(f"{NAME}: cannot run {path}: {e.strerror}")
    sys.exit(
        f"{NAME}: the ferricorn command is not installed beside {sys.executable} "
        f"(looked for {' and '.join(paths)}): reinstall the ferricorn package into "
        "this environment with pip or uv, which puts the command there"
    )


if __name__ == "__main__":
    main()
