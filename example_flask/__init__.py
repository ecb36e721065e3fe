"""A small Flask app that calls an AI gateway with end-to-end correlation.

Serve it with ``gunicorn example_flask.app:app`` (or ``"example_flask:create_app()"``, or
``flask --app example_flask run``) from the repository root. With ``AIGW_BASE_URL`` unset it
starts an embedded FakeGateway, so the demo needs no outside service.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request

from aigw_middleware.flask import AIGateway
from aigw_middleware.testing import FakeGateway

from .tenancy import resolve_tenant
from .views import views

__all__ = ["aigw", "create_app"]

LOG_FORMAT = (
    "%(asctime)s %(levelname)-7s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"
)

aigw = AIGateway(tenant_resolver=resolve_tenant)
logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory: ``config`` overrides ``app.config`` (tests pass ``TESTING=True``)."""
    app = Flask(__name__)
    app.config.update(config or {})
    if not app.testing:
        configure_logging()
    if not (app.config.get("AIGW_BASE_URL") or os.environ.get("AIGW_BASE_URL")):
        app.config["AIGW_BASE_URL"] = start_embedded_gateway()
    aigw.init_app(app)
    app.register_blueprint(views)
    app.after_request(log_request)
    return app


def configure_logging() -> None:
    """Every line of the app and of aigw_middleware shows the request ID, tenant and team."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"correlation": {"()": "aigw_middleware.log.CorrelationFilter"}},
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "filters": ["correlation"],
                    "formatter": "plain",
                }
            },
            "loggers": {
                name: {"handlers": ["stderr"], "level": "INFO", "propagate": False}
                for name in ("example_flask", "aigw_middleware")
            },
        }
    )


def start_embedded_gateway() -> str:
    """Start a FakeGateway on a free loopback port for this process; its base URL."""
    gateway = FakeGateway().start()
    atexit.register(gateway.stop)
    logger.info("AIGW_BASE_URL is not set: using the embedded FakeGateway at %s", gateway.base_url)
    return gateway.base_url


def log_request(response: Response) -> Response:
    """One line per Flask request, with the correlation fields from the log filter."""
    logger.info("%s %s -> %s", request.method, request.full_path.rstrip("?"), response.status_code)
    return response
