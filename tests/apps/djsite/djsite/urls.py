"""
URL configuration for djsite project.

The `urlpatterns` list routes URLs to views. For more information please see:
    https://docs.djangoproject.com/en/5.2/topics/http/urls/
Examples:
Function views
    1. Add an import:  from my_app import views
    2. Add a URL to urlpatterns:  path('', views.home, name='home')
Class-based views
    1. Add an import:  from other_app.views import Home
    2. Add a URL to urlpatterns:  path('', Home.as_view(), name='home')
Including another URLconf
    1. Import the include() function: from django.urls import include, path
    2. Add a URL to urlpatterns:  path('blog/', include('blog.urls'))
"""
from django.contrib import admin
from django.http import HttpResponse
from django.urls import path

from . import asgi_views


def private_media(request, name):
    """What Django's router sends under /media/private/ (tests/routes.rs compares it
    with the front's internal mount there)."""
    return HttpResponse(f"django private media {name}")


urlpatterns = [
    path('admin/', admin.site.urls),
    path('media/private/<path:name>', private_media),
    # Async views, served under ASGI (djsite/asgi.py).
    path('async/json/', asgi_views.async_json),
    path('sse/<str:key>/', asgi_views.sse),
    path('sse/<str:key>/release/', asgi_views.sse_release),
    path('sse/<str:key>/state/', asgi_views.sse_state),
    path('signals/', asgi_views.signals),
    path('slow/<str:key>/', asgi_views.slow),
]
