"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from example_django.demo import bench, views

urlpatterns = [
    path("", views.index),
    path("chat/", views.chat),
    path("chat-async/", views.chat_async),
    path("stream/", views.stream),
    path("stream-async/", views.stream_async),
    path("login/", views.login),
    path("logout/", views.logout),
    path("bench/", bench.bench_call),  # for bench/e2e.py
]
