"""URLs of the Django test project."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("plain/", views.plain),
    path("plain-async/", views.plain_async),
    path("no-gateway/", views.no_gateway),
    path("stream/", views.stream),
    path("stream-async/", views.stream_async),
    path("endless/", views.endless),
    path("endless-async/", views.endless_async),
    path("boom/", views.boom),
    path("boom-async/", views.boom_async),
]

handler500 = "tests.djangoapp.views.server_error"
