"""ASGI entry point of the bench's Django project, as `startproject` writes it: Django's
own ASGIHandler, no Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djasync.settings")

application = get_asgi_application()
