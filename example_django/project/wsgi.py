"""WSGI entry point: ``gunicorn example_django.project.wsgi:application`` from the repo root."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_django.project.settings")

application = get_wsgi_application()
