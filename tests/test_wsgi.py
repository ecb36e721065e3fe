"""Specification of aigw_middleware.wsgi: any WSGI app, a plain callable or Falcon.

The same inbound rules as the Django, Flask and ASGI adapters: the request ID from the incoming
header or a fresh one, echoed on the response; tenant, team and user from the resolver (which
receives the WSGI environ) or from trusted peers' headers; bad values replaced or dropped and
logged, never a 500; a streamed body runs with the context bound.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import FileWrapper, setup_testing_defaults

import falcon
import falcon.testing
import pytest

from aigw_middleware import (
    CorrelationContext,
    GatewayConfig,
    bind_context,
    current_context,
    get_client,
)
from aigw_middleware._shared import active
from aigw_middleware.wsgi import AIGatewayMiddleware

HELLO = [{"role": "user", "content": "hi"}]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")

StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class Answer:
    """What a WSGI server would have sent: status, headers and the whole body."""

    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


def environ_for(
    path: str = "/", headers: Mapping[str, str] | None = None, peer: str = "127.0.0.1"
) -> dict[str, Any]:
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {"PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": peer}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    return environ


def call(
    app: WSGIApp,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    peer: str = "127.0.0.1",
    **extra_environ: Any,
) -> Answer:
    """Call ``app`` as a WSGI server does: start_response, iterate the body, close it."""
    answer = Answer()

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        answer.status, answer.headers = status, headers
        return lambda data: None

    body = app({**environ_for(path, headers, peer), **extra_environ}, start_response)
    try:
        answer.body = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return answer


def seen() -> bytes:
    """What the app saw as bound, in one line."""
    context = current_context()
    if context is None:
        return b"unbound"
    return f"{context.request_id} {context.tenant} {context.team} {context.user}".encode()


def plain_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI callable that calls the gateway and reports what it saw."""
    answer = get_client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [seen(), b"\n", answer.content.encode()]


def reporting_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI callable that only reports what it saw."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [seen()]


def streaming_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI callable whose body (a generator) calls the gateway while the server iterates."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Iterator[bytes]:
        yield seen() + b"\n"
        with get_client().chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True
        ) as stream:
            for chunk in stream:
                yield chunk.delta.encode()

    return body()


def sent_to_gateway(config: GatewayConfig, gateway: Any, index: int = -1) -> dict[str, Any]:
    headers = gateway.requests[index].headers
    names = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")
    return {name: headers.get(name) for name in names}


# ---------------------------------------------------------------------------------------------
# The request: bound, sent to the gateway, echoed


def test_a_gateway_call_carries_the_incoming_request_id_and_the_response_echoes_it(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config)

    answer = call(app, headers={"X-AI-Request-Id": "wsgi-1", "X-AI-Session": "sess-9"})

    assert answer.status == "200 OK"
    assert answer.header("X-AI-Request-Id") == "wsgi-1"
    assert answer.body.startswith(b"wsgi-1 None None None\n")
    assert sent_to_gateway(gateway_config, fake_gateway) == {
        "x-ai-request-id": "wsgi-1",
        "x-ai-tenant": None,
        "x-ai-team": None,
        "x-ai-user": None,
        "x-ai-session": "sess-9",
    }
    assert current_context() is None


def test_a_request_without_an_id_gets_a_fresh_one_on_the_response_and_the_gateway_call(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config)

    first, second = call(app), call(app)

    for answer, index in ((first, 0), (second, 1)):
        request_id = answer.header("X-AI-Request-Id")
        assert request_id is not None
        assert GENERATED_ID.fullmatch(request_id)
        assert fake_gateway.requests[index].headers["x-ai-request-id"] == request_id
    assert first.header("X-AI-Request-Id") != second.header("X-AI-Request-Id")


def test_x_request_id_is_accepted_when_x_ai_request_id_is_absent(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config)

    answer = call(app, headers={"X-Request-Id": "from-proxy-1"})

    assert answer.header("X-AI-Request-Id") == "from-proxy-1"
    assert fake_gateway.last.headers["x-ai-request-id"] == "from-proxy-1"


def test_the_echoed_header_replaces_one_the_app_set(gateway_config: GatewayConfig) -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("x-ai-request-id", "the-apps-own")])
        return [b"ok"]

    answer = call(AIGatewayMiddleware(app, gateway_config), headers={"X-AI-Request-Id": "r-1"})

    assert answer.header("X-AI-Request-Id") == "r-1"


def test_echo_can_be_turned_off(gateway_config: GatewayConfig) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config, echo_request_id=False)

    answer = call(app, headers={"X-AI-Request-Id": "r-2"})

    assert answer.header("X-AI-Request-Id") is None
    assert answer.body.startswith(b"r-2 ")


def test_an_exception_from_the_app_propagates_to_the_server_and_leaves_nothing_bound(
    gateway_config: GatewayConfig,
) -> None:
    def failing(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise LookupError("broken app")

    with pytest.raises(LookupError, match="broken app"):
        call(AIGatewayMiddleware(failing, gateway_config))
    assert current_context() is None


def test_without_arguments_the_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, fake_gateway: Any
) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", fake_gateway.base_url)
    monkeypatch.setenv("AIGW_TRUST_TENANT_HEADERS_FROM", "127.0.0.1")

    middleware = AIGatewayMiddleware(reporting_app)
    answer = call(middleware, headers={"X-AI-Request-Id": "env-1", "X-AI-Tenant": "acme"})

    assert middleware.config.base_url == fake_gateway.base_url
    assert answer.body == b"env-1 acme None None"
    assert answer.header("X-AI-Request-Id") == "env-1"


def test_with_its_own_config_get_client_uses_it_inside_requests_only(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config.replace(extra_headers={"X-Own": "yes"}))

    call(app, headers={"X-AI-Request-Id": "own-1"})

    assert fake_gateway.last.headers["x-own"] == "yes"
    assert get_client().config.extra_headers == {}


def test_with_its_own_config_its_clients_serve_the_body_and_bind_context_in_the_request(
    gateway_config: GatewayConfig,
) -> None:
    served: list[object] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        served.append(active())
        with bind_context(request_id="inner"):
            served.append(active())

        def body() -> Iterator[bytes]:
            served.append(active())
            yield b"ok"

        return body()

    middleware = AIGatewayMiddleware(app, gateway_config)
    call(middleware)

    # The context it bound carries them, and bind_context() hands them on.
    assert served == [middleware._clients] * 3
    assert active() is not middleware._clients


# ---------------------------------------------------------------------------------------------
# Tenant, team and user: from the resolver, or from trusted peers


@pytest.mark.parametrize(("peer", "trusted"), [("127.0.0.1", True), ("203.0.113.9", False)])
def test_tenant_headers_count_only_from_trusted_peers(
    gateway_config: GatewayConfig, fake_gateway: Any, peer: str, trusted: bool
) -> None:
    config = gateway_config.replace(trust_tenant_headers_from=("127.0.0.0/8",))
    app = AIGatewayMiddleware(plain_app, config)

    call(
        app,
        headers={"X-AI-Tenant": "acme", "X-AI-Team": "support", "X-AI-User": "u-1"},
        peer=peer,
    )

    sent = sent_to_gateway(config, fake_gateway)
    expected = ("acme", "support", "u-1") if trusted else (None, None, None)
    assert (sent["x-ai-tenant"], sent["x-ai-team"], sent["x-ai-user"]) == expected


def test_the_tenant_resolver_receives_the_wsgi_environ(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    received: list[Mapping[str, Any]] = []

    def resolver(environ: Mapping[str, Any]) -> dict[str, str]:
        received.append(environ)
        return {"tenant": "acme", "team": "support", "user": environ["REMOTE_USER"]}

    app = AIGatewayMiddleware(plain_app, gateway_config, tenant_resolver=resolver)

    answer = call(app, "/chat?x=1", REMOTE_USER="u-42")

    assert received[0]["PATH_INFO"] == "/chat"
    assert received[0]["REMOTE_USER"] == "u-42"
    assert answer.body.startswith(answer.header("X-AI-Request-Id").encode() + b" acme support u-42")  # type: ignore[union-attr]
    sent = sent_to_gateway(gateway_config, fake_gateway)
    assert (sent["x-ai-tenant"], sent["x-ai-team"], sent["x-ai-user"]) == (
        "acme",
        "support",
        "u-42",
    )


def test_the_resolver_wins_over_trusted_headers_field_by_field(
    gateway_config: GatewayConfig,
) -> None:
    config = gateway_config.replace(
        trust_tenant_headers_from=("127.0.0.1",), tenant_resolver=lambda environ: ("acme", None)
    )
    app = AIGatewayMiddleware(reporting_app, config)

    answer = call(app, headers={"X-AI-Tenant": "evil", "X-AI-Team": "ops", "X-AI-Request-Id": "r"})

    assert answer.body == b"r acme ops None"


def test_a_failing_resolver_is_logged_and_the_request_goes_on_without_tenant(
    gateway_config: GatewayConfig, caplog: pytest.LogCaptureFixture
) -> None:
    def resolver(environ: Mapping[str, Any]) -> tuple[str, str]:
        raise KeyError("HTTP_AUTHORIZATION")

    app = AIGatewayMiddleware(reporting_app, gateway_config, tenant_resolver=resolver)

    with caplog.at_level(logging.ERROR, logger="aigw_middleware"):
        answer = call(app, headers={"X-AI-Request-Id": "r-3"})

    assert answer.body == b"r-3 None None None"
    assert "tenant resolver failed" in caplog.text


def test_trust_is_decided_on_the_direct_peer_behind_proxy_fix(
    gateway_config: GatewayConfig,
) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    config = gateway_config.replace(trust_tenant_headers_from=("127.0.0.1",))
    inner = AIGatewayMiddleware(reporting_app, config)
    app = ProxyFix(inner, x_for=1)  # type: ignore[arg-type]

    answer = call(
        app,  # type: ignore[arg-type]
        headers={"X-Forwarded-For": "127.0.0.1", "X-AI-Tenant": "evil", "X-AI-Request-Id": "p"},
        peer="203.0.113.9",
    )

    assert answer.body == b"p None None None"


# ---------------------------------------------------------------------------------------------
# Bad incoming headers: replaced or dropped, logged, never a 500


@pytest.mark.parametrize(
    "bad_id",
    [
        "has space",
        "-leading-dash",
        "x" * 129,
        "x" * 10240,
        "a, b",
        "caf\u00c3\u00a9",
        "<script>",
        "\x00",
        "a\x1bb",
    ],
)
def test_an_invalid_incoming_request_id_is_replaced_and_logged(
    gateway_config: GatewayConfig,
    fake_gateway: Any,
    caplog: pytest.LogCaptureFixture,
    bad_id: str,
) -> None:
    app = AIGatewayMiddleware(plain_app, gateway_config)

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        answer = call(app, headers={"X-AI-Request-Id": bad_id})

    request_id = answer.header("X-AI-Request-Id")
    assert answer.status == "200 OK"
    assert request_id is not None
    assert GENERATED_ID.fullmatch(request_id)
    assert fake_gateway.last.headers["x-ai-request-id"] == request_id
    assert "ignored invalid incoming X-AI-Request-Id" in caplog.text


@pytest.mark.parametrize(
    "bad_tenant", ["", " ", "white space", "t" * 65, "\u00c3\u00a9t\u00c3\u00a9"]
)
def test_an_invalid_tenant_from_a_trusted_peer_is_dropped_and_logged(
    gateway_config: GatewayConfig,
    fake_gateway: Any,
    caplog: pytest.LogCaptureFixture,
    bad_tenant: str,
) -> None:
    config = gateway_config.replace(trust_tenant_headers_from=("127.0.0.1",))
    app = AIGatewayMiddleware(plain_app, config)

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        answer = call(app, headers={"X-AI-Tenant": bad_tenant, "X-AI-Team": "ok-team"})

    assert answer.status == "200 OK"
    sent = sent_to_gateway(config, fake_gateway)
    assert (sent["x-ai-tenant"], sent["x-ai-team"]) == (None, "ok-team")
    if bad_tenant:
        assert "dropped invalid X-AI-Tenant" in caplog.text


@pytest.mark.parametrize("peer", ["", "not-an-address", "fe80::1%eth0", "::ffff:127.0.0.1"])
def test_an_odd_peer_address_never_fails_the_request(
    gateway_config: GatewayConfig, peer: str
) -> None:
    config = gateway_config.replace(trust_tenant_headers_from=("127.0.0.1",))
    app = AIGatewayMiddleware(reporting_app, config)

    answer = call(app, headers={"X-AI-Tenant": "acme", "X-AI-Request-Id": "o"}, peer=peer)

    expected = "acme" if peer == "::ffff:127.0.0.1" else "None"
    assert answer.body == f"o {expected} None None".encode()


# ---------------------------------------------------------------------------------------------
# Streamed bodies


def test_a_streamed_body_calls_the_gateway_with_the_context_bound(
    gateway_config: GatewayConfig, fake_gateway: Any
) -> None:
    app = AIGatewayMiddleware(streaming_app, gateway_config)

    answer = call(app, headers={"X-AI-Request-Id": "stream-1"})

    assert answer.body == b"stream-1 None None None\nHello from FakeGateway: hi"
    assert fake_gateway.last.headers["x-ai-request-id"] == "stream-1"


def test_nothing_stays_bound_between_steps_and_close_runs_with_the_context_bound(
    gateway_config: GatewayConfig,
) -> None:
    closed_with: list[CorrelationContext | None] = []

    def endless(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            try:
                for n in range(1000):
                    yield f"line {n}\n".encode()
            finally:
                closed_with.append(current_context())

        return body()

    app = AIGatewayMiddleware(endless, gateway_config)
    body = app(environ_for(headers={"X-AI-Request-Id": "gone-1"}), lambda *args: lambda data: None)
    iterator = iter(body)

    assert next(iterator) == b"line 0\n"
    assert current_context() is None, "the context stayed bound between two chunks"
    body.close()  # type: ignore[attr-defined]  # the client went away mid-stream

    assert closed_with == [CorrelationContext("gone-1")]
    assert current_context() is None


def test_what_the_app_binds_is_seen_by_its_body_and_never_by_the_server(
    gateway_config: GatewayConfig,
) -> None:
    user: ContextVar[str | None] = ContextVar("user", default=None)

    def app_binding_a_user(
        environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        user.set("ada")  # never reset by the app
        start_response("200 OK", [])

        def body() -> Iterator[bytes]:
            yield f"{user.get()} {seen().decode()}".encode()

        return body()

    app = AIGatewayMiddleware(app_binding_a_user, gateway_config)
    body = app(environ_for(headers={"X-AI-Request-Id": "own-1"}), lambda *args: lambda data: None)

    assert user.get() is None
    assert b"".join(body) == b"ada own-1 None None None"
    assert user.get() is None
    assert current_context() is None


def test_a_list_body_goes_to_the_server_as_the_app_made_it(gateway_config: GatewayConfig) -> None:
    made: list[bytes] = []

    def listing(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        made.append(seen())
        return made

    app = AIGatewayMiddleware(listing, gateway_config)
    body = app(environ_for(headers={"X-AI-Request-Id": "list-1"}), lambda *args: lambda data: None)

    # Iterating a list runs no code of the app's and it has no close(): nothing to bind there.
    assert body is made
    assert made == [b"list-1 None None None"]
    assert current_context() is None


def test_a_body_of_a_list_subclass_is_closed_with_the_context_bound(
    gateway_config: GatewayConfig,
) -> None:
    closed_with: list[CorrelationContext | None] = []

    class ClosingList(list[bytes]):
        def close(self) -> None:
            closed_with.append(current_context())

    def app_with_cleanup(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return ClosingList([b"done"])

    answer = call(
        AIGatewayMiddleware(app_with_cleanup, gateway_config), headers={"X-AI-Request-Id": "sub-1"}
    )

    assert answer.body == b"done"
    assert closed_with == [CorrelationContext("sub-1")]
    assert current_context() is None


def test_a_server_file_wrapper_is_passed_through_for_sendfile(
    gateway_config: GatewayConfig, tmp_path: Any
) -> None:
    path = tmp_path / "data.txt"
    path.write_text("file body")

    def send_file(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](path.open("rb"))  # type: ignore[no-any-return]

    app = AIGatewayMiddleware(send_file, gateway_config)
    environ = {**environ_for(), "wsgi.file_wrapper": FileWrapper}
    body = app(environ, lambda *args: lambda data: None)

    assert isinstance(body, FileWrapper)
    assert b"".join(body) == b"file body"
    body.close()


# ---------------------------------------------------------------------------------------------
# Falcon


class Chat:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        answer = get_client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        resp.text = seen().decode() + "\n" + answer.content


class Stream:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.stream = streaming_app(req.env, lambda *args: lambda data: None)


class Fails:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPForbidden(title="no", description=seen().decode())


def falcon_app(config: GatewayConfig) -> falcon.testing.TestClient:
    app = falcon.App()
    app.add_route("/chat", Chat())
    app.add_route("/stream", Stream())
    app.add_route("/fails", Fails())
    return falcon.testing.TestClient(AIGatewayMiddleware(app, config))  # type: ignore[arg-type]


def resolve_from_query(environ: Mapping[str, Any]) -> tuple[str | None, str]:
    return environ.get("QUERY_STRING", "").removeprefix("tenant=") or None, "support"


@pytest.mark.parametrize("path", ["/chat", "/stream"])
def test_a_falcon_resource_sends_the_request_id_tenant_and_team_to_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: Any, path: str
) -> None:
    client = falcon_app(gateway_config.replace(tenant_resolver=resolve_from_query))

    result = client.simulate_get(
        path, params={"tenant": "acme"}, headers={"X-AI-Request-Id": "f-1"}
    )

    assert result.status_code == 200
    assert result.headers["X-AI-Request-Id"] == "f-1"
    assert result.text.startswith("f-1 acme support None\n")
    assert result.text.endswith("Hello from FakeGateway: hi")
    sent = sent_to_gateway(gateway_config, fake_gateway)
    assert (sent["x-ai-request-id"], sent["x-ai-tenant"], sent["x-ai-team"]) == (
        "f-1",
        "acme",
        "support",
    )


def test_falcon_error_responses_and_404s_carry_the_request_id(
    gateway_config: GatewayConfig,
) -> None:
    client = falcon_app(gateway_config)

    refused = client.simulate_get("/fails", headers={"X-AI-Request-Id": "f-2"})
    missing = client.simulate_get("/nowhere", headers={"X-AI-Request-Id": "f-3"})

    assert refused.status_code == 403
    assert refused.headers["X-AI-Request-Id"] == "f-2"
    assert refused.json["description"] == "f-2 None None None"
    assert missing.status_code == 404
    assert missing.headers["X-AI-Request-Id"] == "f-3"


def test_a_bad_request_id_never_fails_a_falcon_request(gateway_config: GatewayConfig) -> None:
    client = falcon_app(gateway_config)

    result = client.simulate_get("/chat", headers={"X-AI-Request-Id": "bad id\t" * 40})

    assert result.status_code == 200
    assert GENERATED_ID.fullmatch(result.headers["X-AI-Request-Id"])
