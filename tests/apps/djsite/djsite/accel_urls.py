"""djsite's URLs plus the views that answer with X-Accel-* fields."""
from django.urls import path

from djsite import accel_views
from djsite.urls import urlpatterns as site

urlpatterns = site + [
    path("files/<path:name>", accel_views.protected),
    path("events", accel_views.events),
    path("controls", accel_views.controls),
]
