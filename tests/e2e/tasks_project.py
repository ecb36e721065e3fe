"""A small Django project for the Django tasks end-to-end test: its settings, its URLs, a view
that enqueues a task, and the task. Served by gunicorn and run by ``django-admin db_worker``
with ``DJANGO_SETTINGS_MODULE=tests.e2e.tasks_project``; the database is a SQLite file named
by ``TASKS_E2E_DB``.
"""

from __future__ import annotations

import os
import threading

from django.http import HttpRequest, JsonResponse
from django.urls import path

from aigw_middleware import get_client
from aigw_middleware.django.tasks import task

# --- settings -----------------------------------------------------------------------------------

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = ["aigw_middleware.django", "django_tasks", "django_tasks_db"]
MIDDLEWARE = ["aigw_middleware.django.AIGatewayMiddleware"]
ROOT_URLCONF = __name__
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TASKS_E2E_DB", ":memory:"),
        "CONN_MAX_AGE": 60,
        # Web workers and task workers write to one file: wait for the lock instead of failing;
        # a test database needs no fsync per commit.
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
        },
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
AIGW = {
    "BASE_URL": os.environ.get("AIGW_BASE_URL", "http://127.0.0.1:9/v1"),
    "TENANT_RESOLVER": "tests.e2e.workers.resolve_from_query",
}

# --- the task and the view ----------------------------------------------------------------------


@task()
def summarize(label: str) -> None:
    """One gateway call whose prompt is the task's label; which worker ran it goes in the body."""
    get_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": label}],
        metadata={"worker": f"{os.getpid()}/{threading.get_ident()}"},
    )


def summary(request: HttpRequest) -> JsonResponse:
    result = summarize.enqueue(request.GET["label"])
    return JsonResponse({"task_id": str(result.id)})


urlpatterns = [path("summary/", summary)]
