"""The Django site with the views of djsite/accel_views.py, for
tests/accel_redirect.rs: Django's own way of answering with X-Accel-* fields."""
import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "djsite.accel_settings"

application = get_wsgi_application()
