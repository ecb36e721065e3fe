"""The Flask extension, through ``app.test_client()``."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, abort, jsonify, request, stream_with_context
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import ClosingIterator

from aigw_middleware import (
    ConfigurationError,
    GatewayConfig,
    current_context,
    get_async_client,
    get_client,
)
from aigw_middleware._shared import active as active_clients
from aigw_middleware.context import CorrelationContext, wrap
from aigw_middleware.flask import AIGateway
from aigw_middleware.testing import FakeGateway

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_aigw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app config alone decides, whatever the developer's shell exports."""
    import os

    for name in list(os.environ):
        if name.startswith("AIGW_"):
            monkeypatch.delenv(name)


def query_resolver(req: Any) -> tuple[str | None, str | None]:
    """A resolver for tests: ``?tenant=…&team=…``."""
    return req.args.get("tenant"), req.args.get("team")


def seen() -> dict[str, Any]:
    context = current_context()
    assert context is not None, "no correlation context bound in the view"
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


def streamed_answer(first_line: str) -> Iterator[str]:
    """A body that calls the gateway while it is being sent, then names the request ID."""
    yield first_line + "\n"
    for chunk in get_client().chat.completions.create(
        model="gpt-4o-mini", messages=HELLO, stream=True
    ):
        yield chunk.delta
    yield "\n" + seen()["request_id"]


def make_app(gateway: FakeGateway, /, **config: Any) -> Flask:
    """An app with plain, streaming and async views that each call the gateway."""
    app = Flask(__name__)
    app.config.update({"AIGW_BASE_URL": gateway.base_url, "AIGW_MAX_RETRIES": 0, **config})

    @app.get("/chat")
    def chat() -> Any:
        answer = get_client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        return jsonify({**seen(), "answer": answer.content})

    @app.get("/stream")
    def stream() -> Response:
        # A plain generator: it runs after Flask has torn the request down.
        return Response(streamed_answer("start"), mimetype="text/plain")

    @app.get("/stream-ctx")
    def stream_ctx() -> Response:
        @stream_with_context
        def body() -> Iterator[str]:
            yield from streamed_answer(request.args.get("greeting", "start"))

        return Response(body(), mimetype="text/plain")

    @app.get("/async")
    async def async_view() -> Any:
        answer = await get_async_client().chat.completions.create(
            model="gpt-4o-mini", messages=HELLO
        )
        return jsonify({**seen(), "answer": answer.content})

    @app.get("/seen")
    def seen_view() -> Any:
        return jsonify(seen())

    return app


def gateway_headers(gateway: FakeGateway, index: int = -1) -> dict[str, str | None]:
    headers = gateway.requests[index].headers
    return {name: headers.get(name) for name in ("x-ai-request-id", "x-ai-tenant", "x-ai-team")}


# ---------------------------------------------------------------------------------------------
# The request lifecycle


@pytest.mark.parametrize("path", ["/chat", "/stream", "/stream-ctx", "/async"])
def test_each_view_sends_the_request_id_tenant_and_team_to_the_gateway(
    fake_gateway: FakeGateway, path: str
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=query_resolver)

    response = app.test_client().get(
        f"{path}?tenant=acme&team=support", headers={"X-AI-Request-Id": "req-123"}
    )
    response.get_data()  # a streamed body runs only now, after Flask's teardown

    assert response.status_code == 200
    assert response.headers["X-AI-Request-Id"] == "req-123"
    assert gateway_headers(fake_gateway) == {
        "x-ai-request-id": "req-123",
        "x-ai-tenant": "acme",
        "x-ai-team": "support",
    }


@pytest.mark.parametrize("path", ["/chat", "/stream", "/async"])
def test_the_resolver_user_and_the_incoming_session_reach_the_gateway(
    fake_gateway: FakeGateway, path: str
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=lambda req: {"tenant": "acme", "user": req.args.get("user")})

    response = app.test_client().get(
        f"{path}?user=u-42", headers={"X-AI-Request-Id": "req-9", "X-AI-Session": "chat-7"}
    )
    response.get_data()

    headers = fake_gateway.requests[-1].headers
    assert {name: value for name, value in headers.items() if name.startswith("x-ai-")} == {
        "x-ai-request-id": "req-9",
        "x-ai-tenant": "acme",
        "x-ai-user": "u-42",
        "x-ai-session": "chat-7",
    }


@pytest.mark.parametrize("path", ["/chat", "/stream", "/stream-ctx", "/async"])
def test_the_next_request_without_a_tenant_sends_none(fake_gateway: FakeGateway, path: str) -> None:
    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=query_resolver)
    client = app.test_client()

    client.get(f"{path}?tenant=acme&team=support", headers={"X-AI-Request-Id": "first"}).get_data()
    second = client.get(path)
    second.get_data()

    assert second.status_code == 200
    assert gateway_headers(fake_gateway) == {
        "x-ai-request-id": second.headers["X-AI-Request-Id"],
        "x-ai-tenant": None,
        "x-ai-team": None,
    }
    assert second.headers["X-AI-Request-Id"] != "first"


def test_a_request_without_an_id_gets_a_fresh_one_seen_by_the_view_and_the_response(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    response = app.test_client().get("/seen")

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-AI-Request-Id"])
    assert response.json == {
        "request_id": response.headers["X-AI-Request-Id"],
        "tenant": None,
        "team": None,
    }


def test_x_request_id_is_accepted_when_x_ai_request_id_is_absent(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    response = app.test_client().get("/chat", headers={"X-Request-Id": "from-the-edge"})

    assert response.headers["X-AI-Request-Id"] == "from-the-edge"
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "from-the-edge"


def test_an_abort_from_a_before_request_hook_registered_first_is_handled_with_the_context_bound(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    handled: list[CorrelationContext | None] = []

    @app.before_request
    def require_login() -> None:
        if "Authorization" not in request.headers:
            abort(401)

    @app.errorhandler(401)
    def unauthorized(error: Exception) -> Any:
        handled.append(current_context())
        return jsonify(error="login required"), 401

    AIGateway(app, tenant_resolver=query_resolver)

    response = app.test_client().get("/seen?tenant=acme", headers={"X-AI-Request-Id": "auth-1"})

    assert response.status_code == 401
    assert response.headers["X-AI-Request-Id"] == "auth-1"
    assert handled == [CorrelationContext("auth-1", "acme", None)]


def test_after_request_and_teardown_functions_run_with_the_context_bound(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=query_resolver)
    observed: list[tuple[str, CorrelationContext | None]] = []

    @app.after_request
    def after(response: Response) -> Response:
        observed.append(("after_request", current_context()))
        return response

    @app.teardown_request
    def teardown(error: BaseException | None) -> None:
        observed.append(("teardown_request", current_context()))

    app.test_client().get("/seen?tenant=acme&team=ops", headers={"X-AI-Request-Id": "life-1"})

    expected = CorrelationContext("life-1", "acme", "ops")
    assert observed == [("after_request", expected), ("teardown_request", expected)]


def test_an_unhandled_exception_gives_a_500_that_carries_the_request_id(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    app.logger.disabled = True  # Flask logs the traceback; it is expected here
    response = app.test_client().get("/boom", headers={"X-AI-Request-Id": "boom-1"})

    assert response.status_code == 500
    assert response.headers["X-AI-Request-Id"] == "boom-1"


def test_an_exception_propagated_in_testing_mode_leaves_nothing_bound(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway, TESTING=True)
    AIGateway(app)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("view failed")

    with pytest.raises(RuntimeError, match="view failed"):
        app.test_client().get("/boom")
    assert current_context() is None


def test_a_404_carries_the_request_id(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    response = app.test_client().get("/nowhere", headers={"X-AI-Request-Id": "lost-1"})

    assert response.status_code == 404
    assert response.headers["X-AI-Request-Id"] == "lost-1"


def test_the_echoed_header_replaces_one_the_view_set(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    @app.get("/forged")
    def forged() -> Any:
        return "ok", 200, {"X-AI-Request-Id": "made-up"}

    response = app.test_client().get("/forged", headers={"X-AI-Request-Id": "real-1"})

    assert response.headers.getlist("X-AI-Request-Id") == ["real-1"]


def test_echo_can_be_turned_off(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway, AIGW_ECHO_REQUEST_ID=False)
    AIGateway(app)

    response = app.test_client().get("/chat", headers={"X-AI-Request-Id": "quiet-1"})

    assert "X-AI-Request-Id" not in response.headers
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "quiet-1"


def test_a_request_context_made_without_dispatch_leaves_nothing_bound(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=query_resolver)

    with app.test_request_context("/seen?tenant=acme"):
        assert app.preprocess_request() is None
        assert current_context() is None


# ---------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize("path", ["/stream", "/stream-ctx"])
def test_a_streamed_body_runs_with_the_context_bound(fake_gateway: FakeGateway, path: str) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    response = app.test_client().get(path, headers={"X-AI-Request-Id": "stream-1"})

    assert response.text == "start\nHello from FakeGateway: hi\nstream-1"
    assert response.headers["X-AI-Request-Id"] == "stream-1"


@pytest.mark.parametrize("use_stream_with_context", [False, True])
def test_a_client_that_disconnects_mid_stream_closes_the_body_with_the_context_bound(
    fake_gateway: FakeGateway, use_stream_with_context: bool
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)
    closed_with: list[CorrelationContext | None] = []

    def body() -> Iterator[str]:
        try:
            for n in range(1000):
                yield f"line {n}\n"
        finally:
            closed_with.append(current_context())

    @app.get("/endless")
    def endless() -> Response:
        iterable = stream_with_context(body()) if use_stream_with_context else body()
        return Response(iterable, mimetype="text/plain")

    response = app.test_client().get(
        "/endless", headers={"X-AI-Request-Id": "gone-1"}, buffered=False
    )
    assert next(iter(response.response)) == b"line 0\n"
    assert current_context() is None, "the context stayed bound between two chunks"
    response.close()

    assert closed_with == [CorrelationContext("gone-1")]
    assert current_context() is None


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_call_on_close_functions_run_with_the_context_bound(
    fake_gateway: FakeGateway, method: str
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)
    closed_with: list[CorrelationContext | None] = []

    @app.route("/closing", methods=["GET", "HEAD"])
    def closing() -> Response:
        response = Response("ok")
        response.call_on_close(lambda: closed_with.append(current_context()))
        return response

    response = app.test_client().open(
        "/closing", method=method, headers={"X-AI-Request-Id": "close-1"}
    )
    response.close()

    assert closed_with == [CorrelationContext("close-1")]
    assert current_context() is None


def test_a_response_class_of_the_apps_own_closes_with_the_context_bound(
    fake_gateway: FakeGateway,
) -> None:
    closed_with: list[CorrelationContext | None] = []

    class AuditedResponse(Response):
        def close(self) -> None:
            closed_with.append(current_context())
            super().close()

    app = make_app(fake_gateway)
    app.response_class = AuditedResponse
    AIGateway(app)

    environ = _environ("/seen", {"HTTP_X_AI_REQUEST_ID": "own-class-1"})
    body = app(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert b"".join(body) == b'{"request_id":"own-class-1","team":null,"tenant":null}\n'
    body.close()  # type: ignore[attr-defined]

    assert closed_with == [CorrelationContext("own-class-1")]
    assert current_context() is None


def test_a_body_made_by_a_wsgi_layer_inside_the_extension_runs_with_the_context_bound(
    fake_gateway: FakeGateway,
) -> None:
    # A layer between the extension and Flask that streams its own body and closes a plain
    # response of Flask's with it.
    app = make_app(fake_gateway)
    flask_wsgi_app = app.wsgi_app

    def layer(environ: dict[str, Any], start_response: Any) -> Any:
        flask_wsgi_app(environ, start_response)
        header = Response(["unused"])

        def body() -> Iterator[bytes]:
            yield seen()["request_id"].encode()

        return ClosingIterator(body(), header.close)

    app.wsgi_app = layer  # type: ignore[method-assign]
    AIGateway(app)

    response = app.test_client().get("/seen", headers={"X-AI-Request-Id": "layer-1"})

    assert response.get_data() == b"layer-1"


def test_a_plain_response_body_goes_to_the_server_as_flask_made_it(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    environ = _environ("/seen", {"HTTP_X_AI_REQUEST_ID": "plain-1"})
    body = app(environ, lambda status, headers, exc_info=None: lambda data: None)

    # Iterating and closing it runs Werkzeug's code only: nothing to bind around it.
    assert type(body) is ClosingIterator
    assert b"".join(body) == b'{"request_id":"plain-1","team":null,"tenant":null}\n'
    body.close()
    assert current_context() is None


# ---------------------------------------------------------------------------------------------
# Async views


def test_three_consecutive_requests_to_an_async_view_all_succeed(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)
    client = app.test_client()

    responses = [client.get("/async", headers={"X-AI-Request-Id": f"a-{n}"}) for n in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json["request_id"] for r in responses] == ["a-0", "a-1", "a-2"]  # type: ignore[index]
    assert [gateway_headers(fake_gateway, n)["x-ai-request-id"] for n in range(3)] == [
        "a-0",
        "a-1",
        "a-2",
    ]


def test_the_async_client_of_an_async_view_is_closed_with_its_event_loop(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    ext = AIGateway(app)
    used: list[Any] = []

    @app.get("/which-client")
    async def which_client() -> str:
        used.append(ext.async_client)
        assert get_async_client() is used[-1]
        return "ok"

    client = app.test_client()
    client.get("/which-client")
    client.get("/which-client")

    assert used[0] is not used[1]
    assert all(c.is_closed for c in used)


# ---------------------------------------------------------------------------------------------
# Tenant and team: trust and the resolver


def test_tenant_headers_from_an_untrusted_peer_are_ignored(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    app.test_client().get("/chat", headers={"X-AI-Tenant": "evil", "X-AI-Team": "root"})

    assert gateway_headers(fake_gateway)["x-ai-tenant"] is None
    assert gateway_headers(fake_gateway)["x-ai-team"] is None


def test_tenant_headers_from_a_trusted_network_in_app_config_are_honoured(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway, AIGW_TRUST_TENANT_HEADERS_FROM=["127.0.0.0/8"])
    AIGateway(app)

    app.test_client().get("/chat", headers={"X-AI-Tenant": "acme", "X-AI-Team": "support"})

    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "acme"
    assert gateway_headers(fake_gateway)["x-ai-team"] == "support"


def test_tenant_headers_from_a_network_trusted_by_the_environment_are_honoured(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_TRUST_TENANT_HEADERS_FROM", "10.0.0.0/8, 127.0.0.1")
    app = make_app(fake_gateway)
    AIGateway(app)

    app.test_client().get("/chat", headers={"X-AI-Tenant": "acme"})

    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "acme"


def test_the_resolver_wins_over_trusted_headers_field_by_field(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway, AIGW_TRUST_TENANT_HEADERS_FROM="127.0.0.1")
    AIGateway(app, tenant_resolver=query_resolver)

    app.test_client().get(
        "/chat?tenant=resolved", headers={"X-AI-Tenant": "header", "X-AI-Team": "header-team"}
    )

    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "resolved"
    assert gateway_headers(fake_gateway)["x-ai-team"] == "header-team"


def test_an_async_resolver_works_as_flask_runs_async_views(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)

    async def resolver(req: Any) -> dict[str, str | None]:
        return {"tenant": req.args.get("tenant"), "team": "async-team"}

    AIGateway(app, tenant_resolver=resolver)

    app.test_client().get("/chat?tenant=acme", headers={"X-AI-Request-Id": "req-async"})

    assert gateway_headers(fake_gateway) == {
        "x-ai-request-id": "req-async",
        "x-ai-tenant": "acme",
        "x-ai-team": "async-team",
    }


def test_the_resolver_can_be_named_in_app_config(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway, AIGW_TENANT_RESOLVER=f"{__name__}.query_resolver")
    AIGateway(app)

    app.test_client().get("/chat?tenant=acme&team=ops")

    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "acme"
    assert gateway_headers(fake_gateway)["x-ai-team"] == "ops"


def test_the_resolver_sees_the_authenticated_session(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway, SECRET_KEY="test")

    def from_session(req: Any) -> tuple[str | None, str | None]:
        from flask import session

        return session.get("tenant"), None

    AIGateway(app, tenant_resolver=from_session)
    client = app.test_client()
    with client.session_transaction() as session:
        session["tenant"] = "acme"

    client.get("/chat")

    assert gateway_headers(fake_gateway)["x-ai-tenant"] == "acme"


def test_a_failing_resolver_is_logged_and_the_request_goes_on_without_tenant(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: Any) -> tuple[str, str]:
        raise LookupError("no such user")

    app = make_app(fake_gateway)
    AIGateway(app, tenant_resolver=broken)

    with caplog.at_level(logging.ERROR, logger="aigw_middleware"):
        response = app.test_client().get("/chat")

    assert response.status_code == 200
    assert gateway_headers(fake_gateway)["x-ai-tenant"] is None
    assert "tenant resolver failed" in caplog.text


def test_trust_is_decided_on_the_direct_peer_behind_proxy_fix(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway, AIGW_TRUST_TENANT_HEADERS_FROM="127.0.0.1")
    AIGateway(app)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    app.test_client().get(
        "/chat",
        headers={"X-Forwarded-For": "127.0.0.1", "X-AI-Tenant": "evil"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )

    assert gateway_headers(fake_gateway)["x-ai-tenant"] is None


# ---------------------------------------------------------------------------------------------
# Bad incoming headers: replaced or dropped, logged, never a 500


@pytest.mark.parametrize(
    "bad_id",
    ["has space", "-leading-dash", "x" * 129, "a, b", "caf\u00e9", "quote\"'", "<script>"],
)
def test_an_invalid_incoming_request_id_is_replaced_and_logged(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture, bad_id: str
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        response = app.test_client().get("/chat", headers={"X-AI-Request-Id": bad_id})

    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-AI-Request-Id"])
    assert gateway_headers(fake_gateway)["x-ai-request-id"] == response.headers["X-AI-Request-Id"]
    assert "ignored invalid incoming X-AI-Request-Id" in caplog.text


def test_a_repeated_request_id_header_is_invalid(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    response = app.test_client().get(
        "/chat", headers=[("X-AI-Request-Id", "one"), ("X-AI-Request-Id", "two")]
    )

    assert response.status_code == 200
    assert response.headers["X-AI-Request-Id"] not in {"one", "two", "one, two", "one,two"}


@pytest.mark.parametrize("bad_tenant", ["", " ", "white space", "t" * 65, "\u00e9t\u00e9"])
def test_an_invalid_tenant_from_a_trusted_peer_is_dropped_without_failing(
    fake_gateway: FakeGateway, bad_tenant: str
) -> None:
    app = make_app(fake_gateway, AIGW_TRUST_TENANT_HEADERS_FROM="127.0.0.1")
    AIGateway(app)

    response = app.test_client().get(
        "/chat", headers={"X-AI-Tenant": bad_tenant, "X-AI-Team": "ok-team"}
    )

    assert response.status_code == 200
    assert gateway_headers(fake_gateway)["x-ai-tenant"] is None
    assert gateway_headers(fake_gateway)["x-ai-team"] == "ok-team"


@pytest.mark.parametrize("peer", ["", "not-an-address", "fe80::1%eth0", "::ffff:127.0.0.1"])
def test_an_odd_peer_address_never_fails_the_request(fake_gateway: FakeGateway, peer: str) -> None:
    app = make_app(fake_gateway, AIGW_TRUST_TENANT_HEADERS_FROM="127.0.0.1")
    AIGateway(app)

    response = app.test_client().get(
        "/chat", headers={"X-AI-Tenant": "acme"}, environ_base={"REMOTE_ADDR": peer}
    )

    assert response.status_code == 200
    expected = "acme" if peer == "::ffff:127.0.0.1" else None
    assert gateway_headers(fake_gateway)["x-ai-tenant"] == expected


# ---------------------------------------------------------------------------------------------
# Configuration and the app's own clients


def test_two_apps_from_one_factory_call_their_own_gateways() -> None:
    ext = AIGateway()

    def create_app(base_url: str) -> Flask:
        app = Flask(__name__)
        app.config["AIGW_BASE_URL"] = base_url

        @app.get("/chat")
        def chat() -> str:
            return get_client().chat.completions.create(model="m", messages=HELLO).content

        ext.init_app(app)
        return app

    with FakeGateway() as first_gw, FakeGateway() as second_gw:
        first, second = create_app(first_gw.base_url), create_app(second_gw.base_url)

        first.test_client().get("/chat", headers={"X-AI-Request-Id": "to-first"})
        second.test_client().get("/chat", headers={"X-AI-Request-Id": "to-second"})

        assert [r.headers["x-ai-request-id"] for r in first_gw.requests] == ["to-first"]
        assert [r.headers["x-ai-request-id"] for r in second_gw.requests] == ["to-second"]
        with first.app_context():
            first_client = ext.client
            assert get_client() is first_client
            assert first_client.config.base_url == first_gw.base_url
        with second.app_context():
            assert ext.client is not first_client
            assert ext.client.config.base_url == second_gw.base_url


def test_a_thread_started_from_a_view_with_wrap_uses_the_apps_client_and_the_context(
    fake_gateway: FakeGateway,
) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)

    @app.get("/background")
    def background() -> str:
        worker = threading.Thread(
            target=wrap(lambda: get_client().chat.completions.create(model="m", messages=HELLO))
        )
        worker.start()
        worker.join(timeout=10)
        return "ok"

    app.test_client().get("/background", headers={"X-AI-Request-Id": "in-thread"})

    assert gateway_headers(fake_gateway)["x-ai-request-id"] == "in-thread"


def test_get_client_outside_an_app_context_is_not_the_apps(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    ext = AIGateway(app)
    with app.app_context():
        app_client = ext.client

    assert get_client() is not app_client


@pytest.mark.parametrize("path", ["/chat", "/stream", "/stream-ctx", "/async"])
def test_after_a_request_get_client_is_no_longer_the_apps(
    fake_gateway: FakeGateway, path: str
) -> None:
    # Flask 2.3's stream_with_context pops the request context out of order: a client made
    # active by an app-context hook stayed active after the response, for the whole process.
    app = make_app(fake_gateway)
    ext = AIGateway(app)
    with app.app_context():
        app_client = ext.client

    app.test_client().get(path).get_data()

    assert get_client() is not app_client


@pytest.mark.parametrize("resolved", [False, True])
def test_inside_the_wsgi_middleware_with_its_own_config_views_and_bodies_get_the_apps_clients(
    fake_gateway: FakeGateway, resolved: bool
) -> None:
    from aigw_middleware.wsgi import AIGatewayMiddleware

    app = make_app(fake_gateway, **({"AIGW_TENANT_RESOLVER": query_resolver} if resolved else {}))
    AIGateway(app)
    with app.app_context():
        app_clients = active_clients()
    served: list[object] = []

    @app.get("/clients")
    def clients() -> Response:
        served.append(active_clients())

        def body() -> Iterator[str]:
            served.append(active_clients())
            yield "ok"

        return Response(body())

    outer = AIGatewayMiddleware(app.wsgi_app, GatewayConfig(base_url=fake_gateway.base_url))
    app.wsgi_app = outer  # type: ignore[method-assign]
    app.test_client().get("/clients?tenant=acme").get_data()

    # The extension, inside, binds a context of its own: the app's clients serve its view and
    # its body, not the outer middleware's.
    assert served == [app_clients, app_clients]
    assert app_clients is not outer._clients


def test_ext_client_outside_a_registered_app_is_a_clear_error() -> None:
    ext = AIGateway()
    with Flask("unregistered").app_context(), pytest.raises(RuntimeError, match="init_app"):
        _ = ext.client


def test_an_invalid_timeout_raises_configuration_error_naming_the_key_at_init_app() -> None:
    app = Flask(__name__)
    app.config["AIGW_TIMEOUT"] = "abc"

    with pytest.raises(ConfigurationError, match="AIGW_TIMEOUT") as raised:
        AIGateway(app)

    assert "abc" in str(raised.value)
    assert "aigw" not in app.extensions


def test_an_invalid_environment_variable_raises_at_init_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIGW_MAX_RETRIES", "many")

    with pytest.raises(ConfigurationError, match="AIGW_MAX_RETRIES"):
        AIGateway(Flask(__name__))


def test_an_unknown_aigw_key_raises_configuration_error() -> None:
    app = Flask(__name__)
    app.config["AIGW_BASEURL"] = "http://127.0.0.1:1/v1"

    with pytest.raises(ConfigurationError, match="AIGW_BASEURL"):
        AIGateway(app)


def test_app_config_wins_over_the_environment(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", "http://127.0.0.1:9/elsewhere")
    monkeypatch.setenv("AIGW_TIMEOUT", "7")
    app = make_app(fake_gateway)
    ext = AIGateway(app)

    with app.app_context():
        assert ext.client.config.base_url == fake_gateway.base_url
        assert ext.client.config.timeout == 7.0


def test_registering_twice_on_one_app_is_an_error(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    ext = AIGateway(app)

    with pytest.raises(RuntimeError, match="already registered"):
        ext.init_app(app)
    with pytest.raises(RuntimeError, match="already registered"):
        AIGateway(app)


def test_the_wsgi_app_stays_callable_by_a_server(fake_gateway: FakeGateway) -> None:
    app = make_app(fake_gateway)
    AIGateway(app)
    statuses: list[str] = []
    headers: list[list[tuple[str, str]]] = []

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        headers.append(hdrs)
        return lambda data: None

    environ = _environ("/seen", {"HTTP_X_AI_REQUEST_ID": "wsgi-1"})
    body = app(environ, start_response)
    try:
        text = b"".join(body)
    finally:
        close: Callable[[], None] = body.close  # type: ignore[attr-defined]
        close()

    assert statuses == ["200 OK"]
    assert ("X-AI-Request-Id", "wsgi-1") in headers[0]
    assert b'"request_id":"wsgi-1"' in text


def test_a_server_file_wrapper_is_passed_through_for_sendfile(
    fake_gateway: FakeGateway, tmp_path: Any
) -> None:
    from flask import send_file
    from werkzeug.wsgi import FileWrapper

    app = make_app(fake_gateway)
    AIGateway(app)
    path = tmp_path / "data.txt"
    path.write_text("file body")

    @app.get("/file")
    def file() -> Response:
        return send_file(path)

    environ = _environ("/file", {"wsgi.file_wrapper": FileWrapper})
    body = app(environ, lambda status, headers, exc_info=None: lambda data: None)

    assert isinstance(body, FileWrapper)
    assert b"".join(body) == b"file body"
    body.close()


def _environ(path: str, extra: dict[str, Any]) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path)
    try:
        return {**builder.get_environ(), **extra}
    finally:
        builder.close()
