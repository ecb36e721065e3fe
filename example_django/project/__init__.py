"""Settings, URLs and the WSGI/ASGI entry points of the example project."""
