"""The example Django project without AIGatewayMiddleware: the benchmarks' no-correlation server."""

from example_django.project.settings import *  # noqa: F403
from example_django.project.settings import MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("aigw_middleware")]
