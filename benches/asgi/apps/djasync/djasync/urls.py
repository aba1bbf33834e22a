"""The bench project's one URL: the async view at /."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
]
