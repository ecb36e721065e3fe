"""ASGI entry point: ``uvicorn example_django.project.asgi:application`` from the repo root."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_django.project.settings")

application = get_asgi_application()
