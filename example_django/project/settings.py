"""Settings of the example project. The secret key and the demo users are for the demo only.

The AI gateway is ``AIGW_BASE_URL`` when set; otherwise the project starts its own
FakeGateway, so it runs without any outside service.
"""

from __future__ import annotations

import os

from example_django.demo.gateway import embedded_gateway_url

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = ["aigw_middleware.django", "example_django.demo"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After the session middleware, because the tenant resolver reads the session.
    "aigw_middleware.django.AIGatewayMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "example_django.project.urls"
# Sessions live in signed cookies, so the project needs no database and no migrations.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES: dict[str, dict[str, str]] = {}

AIGW = {
    "BASE_URL": os.environ.get("AIGW_BASE_URL") or embedded_gateway_url(),
    "TENANT_RESOLVER": "example_django.demo.tenancy.tenant_for_request",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "aigw_middleware.log.CorrelationFilter"}},
    "formatters": {
        "correlated": {
            "format": "%(asctime)s %(levelname)s [request_id=%(request_id)s "
            "tenant=%(tenant)s team=%(team)s] %(name)s: %(message)s"
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["correlation"],
            "formatter": "correlated",
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "example_django": {"level": "INFO"},
        "aigw_middleware": {"level": "INFO"},
    },
}
