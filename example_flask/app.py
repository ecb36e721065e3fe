"""The WSGI entry point: ``gunicorn example_flask.app:app``."""

from __future__ import annotations

from example_flask import create_app

app = create_app()
