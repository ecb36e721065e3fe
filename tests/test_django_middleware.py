"""AIGatewayMiddleware: what the gateway receives and what the response says, per request."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import wsgiref.util
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from django.http.response import ResponseHeaders
from django.test import AsyncClient, Client, RequestFactory

from aigw_middleware.config import _ENV_VARS
from aigw_middleware.context import current_context
from aigw_middleware.django import AIGatewayMiddleware, request_context
from aigw_middleware.errors import ConfigurationError
from aigw_middleware.testing import FakeGateway

from .disconnect import serve_to_a_client_that_leaves
from .djangoapp import resolvers, views

VIEWS = ["/plain/", "/plain-async/", "/stream/", "/stream-async/"]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
# Django warns when it converts a streamed body between sync and async iteration; those
# conversions (an async body under WSGI, a sync one under ASGI) are cases under test here.
conversion_warning = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")


@pytest.fixture(autouse=True)
def _no_aigw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def aigw(settings: Any, fake_gateway: FakeGateway) -> Callable[..., None]:
    """Points ``settings.AIGW`` at the test's gateway; call it to add keys, e.g. ``aigw(TIMEOUT=5)``."""

    def apply(**keys: Any) -> None:
        settings.AIGW = {"BASE_URL": fake_gateway.base_url, "MAX_RETRIES": 0, **keys}

    apply()
    return apply


def read(response: Any) -> bytes:
    """The body as a WSGI server reads it: iterating the response converts an async body."""
    return b"".join(response) if response.streaming else bytes(response.content)


async def aread(response: Any) -> bytes:
    """The body as Django's ASGI handler reads it: ``async for`` converts a sync body."""
    if not response.streaming:
        return bytes(response.content)
    return b"".join([part async for part in response])


def view_saw(body: bytes) -> set[str]:
    """The request IDs the view saw: from its JSON, or one per streamed step."""
    if body.startswith(b"{"):
        data = json.loads(body)
        return {data["request_id"], data["correlation"], data["typed"]}
    lines = body.decode().splitlines()
    assert len(lines) >= 3, lines
    return set(lines)


def gateway_headers(gateway: FakeGateway) -> Any:
    assert len(gateway.requests) == 1, gateway.requests
    return gateway.requests[0].headers


def assert_correlated(response: Any, body: bytes, gateway: FakeGateway) -> None:
    """The response, the view and the gateway all carry the CORRELATED values."""
    assert response.status_code == 200
    assert response["X-AI-Request-Id"] == "req-42"
    assert view_saw(body) == {"req-42"}
    headers = gateway_headers(gateway)
    assert headers["x-ai-request-id"] == "req-42"
    assert headers["x-ai-tenant"] == "acme"
    assert headers["x-ai-team"] == "research"
    assert current_context() is None


CORRELATED = {"X-AI-Request-Id": "req-42", "X-AI-Tenant": "acme", "X-AI-Team": "research"}


@conversion_warning
@pytest.mark.parametrize("path", VIEWS)
def test_client_request_reaches_gateway_with_its_id_tenant_and_team(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway, path: str
) -> None:
    aigw(TRUST_TENANT_HEADERS_FROM=["127.0.0.1/32"])

    response = client.get(path, headers=CORRELATED)
    body = read(response)

    assert_correlated(response, body, fake_gateway)


@conversion_warning
@pytest.mark.parametrize("path", VIEWS)
async def test_async_client_request_reaches_gateway_with_its_id_tenant_and_team(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway, path: str
) -> None:
    aigw(TRUST_TENANT_HEADERS_FROM=["127.0.0.1/32"])

    response = await async_client.get(path, headers=CORRELATED)
    body = await aread(response)

    assert_correlated(response, body, fake_gateway)


def test_sync_streamed_body_leaves_nothing_bound_between_steps(
    client: Client, aigw: Callable[..., None]
) -> None:
    response = client.get("/stream/", headers={"X-AI-Request-Id": "req-steps"})
    parts = iter(response.streaming_content)  # type: ignore[attr-defined]

    assert next(parts) == b"req-steps\n"
    assert current_context() is None


async def test_async_streamed_body_leaves_nothing_bound_between_steps(
    async_client: AsyncClient, aigw: Callable[..., None]
) -> None:
    response = await async_client.get("/stream-async/", headers={"X-AI-Request-Id": "req-steps"})
    parts = aiter(response.streaming_content)  # type: ignore[attr-defined]

    assert await anext(parts) == b"req-steps\n"
    assert current_context() is None
    await parts.aclose()


@pytest.fixture
def cleanups() -> Iterator[list[str | None]]:
    """What the endless views' cleanup saw bound; served without Django's test client, whose
    wrappers close the body themselves, and without the database check that ends a request."""
    views.cleanups.clear()
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield views.cleanups
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)
    views.cleanups.clear()


def test_sync_body_cleanup_runs_bound_when_the_client_disconnects(
    aigw: Callable[..., None], cleanups: list[str | None]
) -> None:
    environ: dict[str, Any] = {"PATH_INFO": "/endless/", "HTTP_X_AI_REQUEST_ID": "req-gone"}
    wsgiref.util.setup_testing_defaults(environ)
    body = WSGIHandler()(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert next(iter(body)) == b"req-gone\n"

    body.close()  # what a WSGI server does when the client goes away mid-stream

    assert cleanups == ["req-gone"]
    assert current_context() is None


@conversion_warning
@pytest.mark.parametrize("path", ["/endless-async/", "/endless/"])
async def test_body_cleanup_runs_bound_when_the_client_disconnects_under_asgi(
    aigw: Callable[..., None], cleanups: list[str | None], path: str
) -> None:
    # Django 4.2's ASGI handler does not listen for the disconnect while it streams (5.0 does):
    # the server drops the parts sent to the gone client and the body runs to its end, where
    # its cleanup runs, bound as well.
    sent = await serve_to_a_client_that_leaves(
        ASGIHandler(), path, "req-gone", drop_late_sends=django.VERSION < (5, 0)
    )

    assert sent[0]["type"] == "http.response.start"
    assert cleanups == ["req-gone"]
    assert current_context() is None


def test_missing_request_id_is_generated_and_echoed(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    response = client.get("/plain/")

    request_id = response["X-AI-Request-Id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == request_id


def test_x_request_id_is_used_when_x_ai_request_id_is_absent(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    response = client.get("/plain/", headers={"X-Request-Id": "upstream-7"})

    assert response["X-AI-Request-Id"] == "upstream-7"
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "upstream-7"


@pytest.mark.parametrize("bad_id", ["x" * 500, "<script>", "réquête-ü", ""])
def test_invalid_incoming_id_is_replaced_and_logged(
    client: Client,
    aigw: Callable[..., None],
    fake_gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
    bad_id: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        response = client.get("/plain/", headers={"X-AI-Request-Id": bad_id})

    assert response.status_code == 200
    request_id = response["X-AI-Request-Id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == request_id
    assert any("invalid incoming X-AI-Request-Id" in r.getMessage() for r in caplog.records)


def test_tenant_headers_from_an_untrusted_peer_are_ignored(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TRUST_TENANT_HEADERS_FROM=["10.0.0.0/8"])

    client.get("/plain/", headers=CORRELATED)

    headers = gateway_headers(fake_gateway)
    assert "x-ai-tenant" not in headers
    assert "x-ai-team" not in headers


def test_tenant_headers_from_a_trusted_peer_are_used(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TRUST_TENANT_HEADERS_FROM=["10.0.0.0/8"])

    client.get("/plain/", headers=CORRELATED, REMOTE_ADDR="10.1.2.3")

    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-tenant"] == "acme"
    assert headers["x-ai-team"] == "research"


def test_resolver_wins_over_trusted_tenant_headers(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(
        TRUST_TENANT_HEADERS_FROM=["127.0.0.1/32"],
        TENANT_RESOLVER="tests.djangoapp.resolvers.fixed_tenant",
    )

    client.get("/plain/", headers=CORRELATED)

    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-tenant"] == "resolved-tenant"
    assert headers["x-ai-team"] == "resolved-team"


def test_repeated_tenant_header_arrives_comma_joined_and_is_dropped(
    client: Client,
    aigw: Callable[..., None],
    fake_gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    aigw(TRUST_TENANT_HEADERS_FROM=["127.0.0.1/32"])

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        # What Django makes of two X-AI-Tenant headers.
        client.get("/plain/", headers={"X-AI-Tenant": "acme,evil"})

    assert "x-ai-tenant" not in gateway_headers(fake_gateway)
    assert any("dropped invalid X-AI-Tenant" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_resolver_reads_the_logged_in_user(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.tenant_from_user")
    client.force_login(User.objects.create_user("alice", is_staff=True))

    client.get("/plain/")

    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-tenant"] == "alice"
    assert headers["x-ai-team"] == "staff"


@pytest.mark.django_db(transaction=True)
async def test_resolver_reads_the_logged_in_user_under_async(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.tenant_from_user")
    user = await sync_to_async(User.objects.create_user)("bob")
    await sync_to_async(async_client.force_login)(user)  # aforce_login: Django 5.0+

    await async_client.get("/plain-async/")

    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-tenant"] == "bob"
    assert headers["x-ai-team"] == "members"


async def test_an_async_resolver_runs_on_the_event_loop_without_a_thread_hop(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.async_fixed_tenant")
    resolvers.async_resolver_threads.clear()

    await async_client.get("/plain-async/", headers={"X-AI-Request-Id": "req-async-resolver"})

    assert resolvers.async_resolver_threads == [threading.get_ident()]
    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-request-id"] == "req-async-resolver"
    assert (headers["x-ai-tenant"], headers["x-ai-team"]) == ("async-tenant", "async-team")


@pytest.mark.skipif(django.VERSION < (5, 0), reason="request.auser() is new in Django 5.0")
@pytest.mark.django_db(transaction=True)
async def test_an_async_resolver_reads_the_logged_in_user_with_auser(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.async_tenant_from_user")
    user = await sync_to_async(User.objects.create_user)("dave", is_staff=True)
    await sync_to_async(async_client.force_login)(user)

    await async_client.get("/plain-async/")

    headers = gateway_headers(fake_gateway)
    assert (headers["x-ai-tenant"], headers["x-ai-team"]) == ("dave", "staff")


def test_an_async_resolver_also_works_when_the_stack_runs_sync(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.async_fixed_tenant")

    response = client.get("/plain/", headers={"X-AI-Request-Id": "req-sync-stack"})

    assert response.status_code == 200
    headers = gateway_headers(fake_gateway)
    assert headers["x-ai-request-id"] == "req-sync-stack"
    assert (headers["x-ai-tenant"], headers["x-ai-team"]) == ("async-tenant", "async-team")


async def test_a_sync_resolver_under_async_runs_in_a_worker_thread(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.thread_noting_tenant")
    resolvers.sync_resolver_threads.clear()

    await async_client.get("/plain-async/")

    assert len(resolvers.sync_resolver_threads) == 1
    assert resolvers.sync_resolver_threads != [threading.get_ident()]
    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "sync-tenant"


@pytest.mark.django_db
def test_the_resolver_binds_the_logged_in_user_and_the_session_comes_from_its_header(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    aigw(TENANT_RESOLVER="tests.djangoapp.resolvers.attribution_from_user")
    user = User.objects.create_user("carol")
    client.force_login(user)

    client.get("/plain/", headers={"X-AI-Session": "chat-7", "X-AI-User": "forged"})

    headers = gateway_headers(fake_gateway)
    assert (headers["x-ai-tenant"], headers["x-ai-user"]) == ("acme", f"u-{user.pk}")
    assert headers["x-ai-session"] == "chat-7"


async def test_concurrent_async_requests_keep_their_own_ids(
    async_client: AsyncClient, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    ids = [f"req-{n}" for n in range(5)]

    responses = await asyncio.gather(
        *(async_client.get("/plain-async/", headers={"X-AI-Request-Id": i}) for i in ids)
    )

    assert [json.loads(r.content)["request_id"] for r in responses] == ids
    assert sorted(r.headers["x-ai-request-id"] for r in fake_gateway.requests) == ids


def test_view_error_returns_500_with_request_id_and_handler_call_is_correlated(
    aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    client = Client(raise_request_exception=False)

    response = client.get("/boom/", headers={"X-AI-Request-Id": "req-boom"})

    assert response.status_code == 500
    assert response["X-AI-Request-Id"] == "req-boom"
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "req-boom"


async def test_async_view_error_returns_500_with_request_id_and_handler_call_is_correlated(
    aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    client = AsyncClient(raise_request_exception=False)

    response = await client.get("/boom-async/", headers={"X-AI-Request-Id": "req-aboom"})

    assert response.status_code == 500
    assert response["X-AI-Request-Id"] == "req-aboom"
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "req-aboom"


def test_not_found_response_carries_request_id(client: Client, aigw: Callable[..., None]) -> None:
    response = client.get("/missing/", headers={"X-AI-Request-Id": "req-404"})

    assert response.status_code == 404
    assert response["X-AI-Request-Id"] == "req-404"


def test_echo_can_be_turned_off(client: Client, aigw: Callable[..., None]) -> None:
    aigw(ECHO_REQUEST_ID=False)

    response = client.get("/no-gateway/", headers={"X-AI-Request-Id": "req-quiet"})

    assert "X-AI-Request-Id" not in response


def test_changed_setting_applies_to_the_next_request(
    client: Client, aigw: Callable[..., None], fake_gateway: FakeGateway
) -> None:
    client.get("/plain/", headers=CORRELATED)
    aigw(TRUST_TENANT_HEADERS_FROM=["127.0.0.1/32"])
    client.get("/plain/", headers=CORRELATED)

    first, second = fake_gateway.requests
    assert "x-ai-tenant" not in first.headers
    assert second.headers["x-ai-tenant"] == "acme"


def test_invalid_settings_fail_when_the_middleware_loads(settings: Any) -> None:
    settings.AIGW = {"TIMEOUT": "soon"}

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    with pytest.raises(ConfigurationError) as caught:
        AIGatewayMiddleware(view)
    assert caught.value.key == "TIMEOUT"


def test_request_context_of_a_request_the_middleware_never_saw_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="AIGatewayMiddleware"):
        request_context(RequestFactory().get("/"))


def test_the_echo_replaces_an_id_header_the_view_set_in_another_case(
    aigw: Callable[..., None],
) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(headers={"x-ai-request-id": "from-the-view"})

    response = AIGatewayMiddleware(view)(
        RequestFactory().get("/", headers={"X-AI-Request-Id": "req-echo"})
    )

    assert isinstance(response, HttpResponse)
    assert [item for item in response.items() if item[0].lower() == "x-ai-request-id"] == [
        ("X-AI-Request-Id", "req-echo")
    ]


class RecordingHeaders(ResponseHeaders):
    """Response headers that record what is set through them."""

    def __init__(self, data: ResponseHeaders) -> None:
        self.set_through: list[tuple[str, str]] = []
        super().__init__(data)

    def __setitem__(self, key: str, value: str) -> None:
        self.set_through.append((key, value))
        super().__setitem__(key, value)


def test_a_response_with_its_own_headers_class_gets_the_id_through_it(
    aigw: Callable[..., None],
) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse()
        response.headers = RecordingHeaders(response.headers)
        return response

    response = AIGatewayMiddleware(view)(
        RequestFactory().get("/", headers={"X-AI-Request-Id": "req-own"})
    )

    assert isinstance(response, HttpResponse)
    assert isinstance(response.headers, RecordingHeaders)
    assert ("X-AI-Request-Id", "req-own") in response.headers.set_through


async def test_in_an_async_stack_a_response_with_its_own_headers_class_gets_the_id_through_it(
    aigw: Callable[..., None],
) -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse()
        response.headers = RecordingHeaders(response.headers)
        return response

    response = await AIGatewayMiddleware(view)(
        RequestFactory().get("/", headers={"X-AI-Request-Id": "req-own"})
    )

    assert isinstance(response, HttpResponse)
    assert isinstance(response.headers, RecordingHeaders)
    assert ("X-AI-Request-Id", "req-own") in response.headers.set_through


async def test_in_an_async_stack_it_is_a_coroutine_function_and_binds_the_request(
    aigw: Callable[..., None],
) -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        context = current_context()
        return HttpResponse(context.request_id if context else "unbound")

    middleware = AIGatewayMiddleware(view)
    response = await middleware(RequestFactory().get("/", headers={"X-AI-Request-Id": "req-as"}))

    assert isinstance(middleware, AIGatewayMiddleware)
    assert iscoroutinefunction(middleware)
    assert response.content == b"req-as"
    assert response["X-AI-Request-Id"] == "req-as"
    assert current_context() is None


async def test_a_subclass_keeps_its_own_call_in_an_async_stack(aigw: Callable[..., None]) -> None:
    calls: list[str] = []

    class Counting(AIGatewayMiddleware):
        def __call__(self, request: HttpRequest) -> Any:
            calls.append(request.path)
            return super().__call__(request)

    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    response = await Counting(view)(RequestFactory().get("/counted/"))

    assert calls == ["/counted/"]
    assert "X-AI-Request-Id" in response
