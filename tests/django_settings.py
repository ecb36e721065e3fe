"""Settings of the Django project the test suite runs against (urls and views in tests.djangoapp)."""

from __future__ import annotations

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "aigw_middleware.django",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# Signed-cookie sessions need no table, so only tests that log a user in touch the database.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "aigw_middleware.django.AIGatewayMiddleware",
]
ROOT_URLCONF = "tests.djangoapp.urls"
AIGW: dict[str, object] = {}
