"""A small Falcon app that calls an AI gateway with end-to-end correlation.

Serve it with ``gunicorn example_wsgi.app:app`` from the repository root. With ``AIGW_BASE_URL``
unset it starts an embedded FakeGateway, so the demo needs no outside service.
"""
