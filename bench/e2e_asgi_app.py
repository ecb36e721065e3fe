"""The ASGI example without AIGatewayMiddleware: the benchmarks' no-correlation server.

``uvicorn bench.e2e_asgi_app:app``. Starlette builds its middleware stack at the first request,
so removing the entry here leaves the app exactly as the example, less the correlation layer.
"""

from aigw_middleware.asgi import AIGatewayMiddleware
from example_asgi.app import app

app.user_middleware = [
    entry for entry in app.user_middleware if entry.cls is not AIGatewayMiddleware
]
