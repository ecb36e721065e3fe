"""The WSGI entry point: ``gunicorn example_wsgi.app:app``.

Endpoints (add ``&tenant=acme`` or ``&tenant=globex`` to pick a demo tenant, ``&user=alice`` or
``&user=bob`` a demo user):

- ``GET /`` what is bound
- ``GET /chat?q=hello`` a plain call through ``get_client()``
- ``GET /stream?q=hello`` newline-delimited JSON streamed while the gateway streams

Every response carries ``X-AI-Request-Id``; send one (or ``X-Request-Id``) to choose it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

import falcon

from aigw_middleware import GatewayConfig, current_context, get_client
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.testing import FakeGateway
from aigw_middleware.wsgi import AIGatewayMiddleware

MODEL = "gpt-4o-mini"
LOG_FORMAT = "%(levelname)-7s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"
DEMO_TENANTS = {
    "acme": {"tenant": "acme", "team": "support"},
    "globex": {"tenant": "globex", "team": "research"},
}
#: Demo users by name, and their opaque IDs (what a real app keeps as a primary key or UUID).
DEMO_USER_IDS = {"alice": "u-7f3a9c", "bob": "u-91c2e4"}

logger = logging.getLogger("example_wsgi")


def resolve_tenant(environ: Mapping[str, Any]) -> dict[str, str | None]:
    """The demo tenant named by ``?tenant=`` and the demo user by ``?user=``; a real app reads
    its authenticated user here (``REMOTE_USER``, a session)."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    user = DEMO_USER_IDS.get(query.get("user", [""])[0])
    return {**DEMO_TENANTS.get(query.get("tenant", [""])[0], {}), "user": user}


def correlation() -> dict[str, Any]:
    """What the code sees as bound for this request."""
    context = current_context()
    if context is None:
        return dict.fromkeys(("request_id", "tenant", "team", "user", "session"))
    return {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "user": context.user,
        "session": context.session,
    }


def question(q: str) -> list[Any]:
    return [{"role": "user", "content": q}]


class Index:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {**correlation(), "try": "/chat?q=hello&tenant=acme"}


class Chat:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = req.get_param("q", default="Say hello")
        answer = get_client().chat.completions.create(model=MODEL, messages=question(q))
        logger.info("gateway answered %s", answer.gateway_request_id)
        resp.media = {**correlation(), "answer": answer.content}


class Stream:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/x-ndjson"
        resp.stream = ndjson_answer(question(req.get_param("q", default="Say hello")))


def ndjson_answer(messages: list[Any]) -> Iterator[bytes]:
    """Runs while the server sends the body, after Falcon returned: the context is bound."""
    yield json.dumps({"event": "start", **correlation()}).encode() + b"\n"
    parts: list[str] = []
    with get_client().chat.completions.create(
        model=MODEL, messages=messages, stream=True
    ) as chunks:
        for chunk in chunks:
            parts.append(chunk.delta)
            yield json.dumps({"delta": chunk.delta}).encode() + b"\n"
    yield json.dumps({"event": "end", **correlation(), "answer": "".join(parts)}).encode() + b"\n"


def gateway_config() -> GatewayConfig:
    """The environment's gateway, else an embedded FakeGateway on a free loopback port."""
    if os.environ.get("AIGW_BASE_URL"):
        return GatewayConfig.from_env(tenant_resolver=resolve_tenant)
    embedded = FakeGateway().start()
    logger.info("AIGW_BASE_URL is not set: using the embedded FakeGateway at %s", embedded.base_url)
    return GatewayConfig.from_env(base_url=embedded.base_url, tenant_resolver=resolve_tenant)


handler = logging.StreamHandler()
handler.addFilter(CorrelationFilter())
handler.setFormatter(logging.Formatter(LOG_FORMAT))
for name in ("example_wsgi", "aigw_middleware"):
    logging.getLogger(name).addHandler(handler)
    logging.getLogger(name).setLevel(logging.INFO)

falcon_app = falcon.App()
falcon_app.add_route("/", Index())
falcon_app.add_route("/chat", Chat())
falcon_app.add_route("/stream", Stream())
# The outermost layer: Falcon, its middleware and error handlers all run inside the context.
app = AIGatewayMiddleware(falcon_app, gateway_config())
