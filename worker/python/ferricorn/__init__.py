"""ferricorn: one server in place of nginx + gunicorn for WSGI apps.

The server is the ``ferricorn`` command this package installs into the
environment's ``bin/``. This package is the other half: the worker that the
server starts on this interpreter (``python -m ferricorn.worker``).
"""

from ferricorn._worker import PROTOCOL, __version__

__all__ = ["PROTOCOL", "__version__"]
