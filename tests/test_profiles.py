"""Gateway header profiles, as the gateway receives them through the real client and transport."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware import GatewayClient, GatewayConfig, bind_context
from aigw_middleware.context import CorrelationContext
from aigw_middleware.errors import InvalidRequestError
from aigw_middleware.profiles import _PROFILES, _CorrelationNames, _get_profile
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import CorrelationTransport

MESSAGES = [{"role": "user", "content": "hi"}]
NATIVE_PREFIXES = (
    "helicone-",
    "x-portkey-",
    "x-litellm-",
    "cf-aig-",
    "x-bf-",
    "x-request-id",
    "x-tenant-id",
    "agent-session-id",
    "x-session-id",
)
JSON_HEADERS = ("x-portkey-metadata", "x-litellm-spend-logs-metadata", "cf-aig-metadata")
FRESH_HEADERS = ("x-litellm-call-id", "x-request-id")

#: Every field bound; the combinations below take subsets of it.
ALL = {"request_id": "req-1", "tenant": "acme", "team": "ml", "user": "u-42", "session": "chat-7"}
#: Name -> bound fields; "none" binds nothing (each call then gets a fresh request ID).
COMBINATIONS: dict[str, tuple[str, ...]] = {
    "none": (),
    "request_id": ("request_id",),
    "tenant": ("request_id", "tenant"),
    "team": ("request_id", "team"),
    "user": ("request_id", "user"),
    "session": ("request_id", "session"),
    "all": tuple(ALL),
}


def native(headers: httpx.Headers) -> dict[str, str]:
    """The gateway-native correlation headers among ``headers``."""
    return {name: value for name, value in headers.items() if name.startswith(NATIVE_PREFIXES)}


def readable(headers: httpx.Headers) -> dict[str, Any]:
    """The native headers as a spec states them.

    JSON headers are parsed; a fresh UUID4 reads ``<uuid4>``; the request ID generated outside
    a context reads ``<id>``.
    """
    generated = headers["x-ai-request-id"]
    out: dict[str, Any] = {}
    for name, value in native(headers).items():
        if name in JSON_HEADERS:
            parsed = json.loads(value)
            out[name] = {k: "<id>" if v == generated != "req-1" else v for k, v in parsed.items()}
        elif name in FRESH_HEADERS:
            assert uuid.UUID(value).version == 4, f"{name}: {value}"
            out[name] = "<uuid4>"
        else:
            out[name] = "<id>" if value == generated != "req-1" else value
    return out


def call(config: GatewayConfig, profile: str, **bound: str) -> None:
    """One chat completion with ``profile``, inside a context bound with ``bound`` if given."""
    with GatewayClient(config, header_profile=profile) as client:
        if bound:
            with bind_context(**bound):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


@pytest.fixture(scope="module")
def shared_gateway() -> Iterator[FakeGateway]:
    """One FakeGateway for the tables below, which only read the last request."""
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def clients(shared_gateway: FakeGateway) -> Iterator[dict[str, GatewayClient]]:
    """One client per profile, shared by the tables (building a client costs the most)."""
    config = GatewayConfig.from_env({}, base_url=shared_gateway.base_url, api_key="sk-test")
    built = {name: GatewayClient(config, header_profile=name) for name in _PROFILES}
    yield built
    for client in built.values():
        client.close()


def received(
    clients: dict[str, GatewayClient], gateway: FakeGateway, profile: str, combination: str
) -> Any:
    """The native headers ``profile`` sends with the fields of ``combination`` bound."""
    bound = {key: ALL[key] for key in COMBINATIONS[combination]}
    with bind_context(**bound) if bound else contextlib.nullcontext():
        clients[profile].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return readable(gateway.requests[-1].headers)


@pytest.mark.parametrize("profile", _PROFILES)
def test_every_profile_sends_the_generic_headers_of_the_bound_fields(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, profile: str
) -> None:
    def generic(combination: str) -> dict[str, str]:
        received(clients, shared_gateway, profile, combination)
        headers = shared_gateway.requests[-1].headers
        return {name: value for name, value in headers.items() if name.startswith("x-ai-")}

    assert generic("all") == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "ml",
        "x-ai-user": "u-42",
        "x-ai-session": "chat-7",
    }
    assert generic("session") == {"x-ai-request-id": "req-1", "x-ai-session": "chat-7"}
    assert list(generic("none")) == ["x-ai-request-id"]


def test_generic_sends_nothing_native(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway
) -> None:
    for combination in COMBINATIONS:
        assert received(clients, shared_gateway, "generic", combination) == {}


HELICONE = {
    "none": {"helicone-property-request-id": "<id>"},
    "request_id": {"helicone-property-request-id": "req-1"},
    "tenant": {"helicone-property-request-id": "req-1", "helicone-property-tenant": "acme"},
    "team": {"helicone-property-request-id": "req-1", "helicone-property-team": "ml"},
    "user": {"helicone-property-request-id": "req-1", "helicone-user-id": "u-42"},
    "session": {"helicone-property-request-id": "req-1", "helicone-session-id": "chat-7"},
    "all": {
        "helicone-property-request-id": "req-1",
        "helicone-property-tenant": "acme",
        "helicone-property-team": "ml",
        "helicone-user-id": "u-42",
        "helicone-session-id": "chat-7",
    },
}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_helicone_sends_user_and_session_natively_and_the_rest_as_properties(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    assert received(clients, shared_gateway, "helicone", combination) == HELICONE[combination]


def test_helicone_sends_the_configured_session_path_and_name_only_inside_a_session(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    profile = _get_profile("helicone", {"session_path": "/chat", "session_name": "Support chat"})
    names = _CorrelationNames()
    inside = dict(profile.headers(CorrelationContext("r", session="chat-7"), names))
    outside = dict(profile.headers(CorrelationContext("r", user="u-42"), names))
    assert inside["Helicone-Session-Path"] == "/chat"
    assert inside["Helicone-Session-Name"] == "Support chat"
    assert "Helicone-Session-Path" not in outside
    assert "Helicone-Session-Name" not in outside


FORWARD = "x-ai-request-id,x-ai-tenant,x-ai-team,x-ai-user,x-ai-session"
PORTKEY = {
    "none": {"request_id": "<id>"},
    "request_id": {"request_id": "req-1"},
    "tenant": {"request_id": "req-1", "tenant": "acme"},
    "team": {"request_id": "req-1", "team": "ml"},
    "user": {"request_id": "req-1", "_user": "u-42"},
    "session": {"request_id": "req-1", "session": "chat-7"},
    "all": {
        "request_id": "req-1",
        "tenant": "acme",
        "team": "ml",
        "_user": "u-42",
        "session": "chat-7",
    },
}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_portkey_sends_trace_id_metadata_with_user_as_underscore_user_and_a_forward_list(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    assert received(clients, shared_gateway, "portkey", combination) == {
        "x-portkey-trace-id": "<id>" if combination == "none" else "req-1",
        "x-portkey-metadata": PORTKEY[combination],
        "x-portkey-forward-headers": FORWARD,
    }


def _spend(combination: str) -> dict[str, str]:
    fields = COMBINATIONS[combination]
    return {"request_id": "<id>"} if not fields else {key: ALL[key] for key in fields}


LITELLM = {
    "none": {"x-litellm-trace-id": "<id>"},
    "request_id": {"x-litellm-trace-id": "req-1"},
    "tenant": {"x-litellm-trace-id": "req-1"},
    "team": {"x-litellm-trace-id": "req-1"},
    "user": {"x-litellm-trace-id": "req-1", "x-litellm-end-user-id": "u-42"},
    "session": {"x-litellm-session-id": "chat-7"},
    "all": {"x-litellm-session-id": "chat-7", "x-litellm-end-user-id": "u-42"},
}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_litellm_sends_a_session_instead_of_the_trace_id_when_one_is_bound(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    assert received(clients, shared_gateway, "litellm", combination) == {
        **LITELLM[combination],
        "x-litellm-spend-logs-metadata": _spend(combination),
        "x-litellm-call-id": "<uuid4>",
    }


def test_litellm_sends_tenant_and_team_as_tags_only_when_enabled() -> None:
    names = _CorrelationNames()
    context = CorrelationContext("r", tenant="acme", team="ml", user="u-42")
    default = dict(_get_profile("litellm").headers(context, names))
    enabled = _get_profile("litellm", {"send_tags": "true"})
    assert "x-litellm-tags" not in default
    assert dict(enabled.headers(context, names))["x-litellm-tags"] == "tenant:acme,team:ml"
    assert dict(enabled.headers(CorrelationContext("r", team="ml"), names))["x-litellm-tags"] == (
        "team:ml"
    )
    assert "x-litellm-tags" not in dict(enabled.headers(CorrelationContext("r"), names))


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_cloudflare_sends_every_bound_field_in_one_metadata_header(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    assert received(clients, shared_gateway, "cloudflare", combination) == {
        "cf-aig-metadata": _spend(combination)
    }


def test_cloudflare_metadata_stays_within_its_five_entries() -> None:
    headers = dict(
        _get_profile("cloudflare").headers(CorrelationContext(**ALL), _CorrelationNames())
    )
    assert list(json.loads(headers["cf-aig-metadata"])) == [
        "request_id",
        "tenant",
        "team",
        "user",
        "session",
    ]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_bifrost_sends_the_user_and_a_fresh_x_request_id(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    expected = {"x-request-id": "<uuid4>"}
    if "user" in COMBINATIONS[combination]:
        expected["x-bf-user-id"] = "u-42"
    assert received(clients, shared_gateway, "bifrost", combination) == expected


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_envoy_sends_tenant_and_session_under_its_conventional_names(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    expected = {
        name: ALL[source]
        for name, source in (("x-tenant-id", "tenant"), ("agent-session-id", "session"))
        if source in COMBINATIONS[combination]
    }
    assert received(clients, shared_gateway, "envoy", combination) == expected


def test_envoy_header_names_are_options() -> None:
    profile = _get_profile("envoy", {"tenant_header": "x-org", "session_header": "x-conversation"})
    headers = profile.headers(
        CorrelationContext("r", tenant="acme", session="s-1"), _CorrelationNames()
    )
    assert ("x-org", "acme") in headers
    assert ("x-conversation", "s-1") in headers
    assert set(profile.native_names) == {"x-org", "x-conversation"}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_openrouter_sends_the_session_as_x_session_id(
    clients: dict[str, GatewayClient], shared_gateway: FakeGateway, combination: str
) -> None:
    expected = {"x-session-id": "chat-7"} if "session" in COMBINATIONS[combination] else {}
    assert received(clients, shared_gateway, "openrouter", combination) == expected


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_openrouter_fills_user_and_session_id_in_the_body(combination: str) -> None:
    bound = {key: ALL[key] for key in COMBINATIONS[combination]}
    context = CorrelationContext(**{"request_id": "r", **bound})
    body = {"model": "m", "messages": MESSAGES}
    filled = _get_profile("openrouter").body_fields(body, context)
    expected = {"user": "u-42"} if "user" in bound else {}
    if "session" in bound:
        expected["session_id"] = "chat-7"
    assert filled == {**body, **expected}


def test_openrouter_never_overrides_body_fields_the_caller_set() -> None:
    body = {"model": "m", "user": "caller-user", "session_id": None}
    context = CorrelationContext("r", user="u-42", session="chat-7")
    assert _get_profile("openrouter").body_fields(body, context) == body


@pytest.mark.parametrize("profile", sorted(set(_PROFILES) - {"openrouter"}))
def test_other_profiles_leave_the_body_alone(profile: str) -> None:
    body = {"model": "m"}
    assert _get_profile(profile).body_fields(body, CorrelationContext(**ALL)) == body


def test_portkey_metadata_values_are_strings_within_its_128_character_limit(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    longest = {
        "request_id": "r" * 128,
        "tenant": "t" * 64,
        "team": "m" * 64,
        "user": "u" * 128,
        "session": "s" * 128,
    }
    call(gateway_config, "portkey", **longest)
    metadata = json.loads(fake_gateway.requests[0].headers["x-portkey-metadata"])
    assert metadata == {
        "request_id": "r" * 128,
        "tenant": "t" * 64,
        "team": "m" * 64,
        "_user": "u" * 128,
        "session": "s" * 128,
    }
    assert all(isinstance(value, str) and len(value) <= 128 for value in metadata.values())


def test_portkey_forwards_the_configured_header_names(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    config = gateway_config.replace(request_id_header="X-Correlation-Id", tenant_header="X-Org")
    call(config, "portkey", request_id="req-1", tenant="acme")
    headers = fake_gateway.requests[0].headers
    assert headers["x-correlation-id"] == "req-1"
    assert (
        headers["x-portkey-forward-headers"]
        == "x-correlation-id,x-org,x-ai-team,x-ai-user,x-ai-session"
    )


def test_an_explicit_forward_list_on_a_call_wins(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with GatewayClient(gateway_config, header_profile="portkey") as client:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-portkey-forward-headers": "x-ai-request-id,x-app-version"},
        )
    assert (
        fake_gateway.requests[0].headers["x-portkey-forward-headers"]
        == "x-ai-request-id,x-app-version"
    )


@pytest.mark.parametrize(
    ("profile", "header"), [("litellm", "x-litellm-call-id"), ("bifrost", "x-request-id")]
)
def test_the_fresh_id_is_new_on_every_retry_while_the_request_id_stays(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway, profile: str, header: str
) -> None:
    fake_gateway.queue_response(429, headers={"retry-after-ms": "1"}, times=2)
    call(gateway_config, profile, request_id="req-1")
    attempts = fake_gateway.requests
    assert len(attempts) == 3
    assert {request.headers["x-ai-request-id"] for request in attempts} == {"req-1"}
    assert len({request.headers[header] for request in attempts}) == 3


def test_a_caller_set_x_request_id_wins_with_bifrost(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with GatewayClient(gateway_config, header_profile="bifrost") as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Request-Id": "mine-1"}
        )
    assert fake_gateway.requests[0].headers["x-request-id"] == "mine-1"


def test_outside_a_context_each_call_gets_its_own_trace_id(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "portkey")
    call(gateway_config, "portkey")
    first, second = (request.headers for request in fake_gateway.requests)
    assert first["x-portkey-trace-id"] == first["x-ai-request-id"]
    assert first["x-portkey-trace-id"] != second["x-portkey-trace-id"]


@pytest.fixture
def other_host() -> Iterator[FakeGateway]:
    """A second server on another port: not the gateway."""
    with FakeGateway() as other:
        yield other


@pytest.mark.parametrize("profile", sorted(_PROFILES))
def test_native_headers_go_only_to_the_gateway(
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    other_host: FakeGateway,
    profile: str,
) -> None:
    with (
        GatewayClient(gateway_config, header_profile=profile) as client,
        bind_context(**ALL),
    ):
        client.request("GET", "models")
        with pytest.raises(InvalidRequestError):  # the client calls the gateway only
            client.request("GET", f"{other_host.base_url}/models")
    managed = {name.lower() for name in _get_profile(profile).native_names}
    sent = set(native(fake_gateway.requests[0].headers))
    assert sent <= managed
    assert bool(sent) == (profile != "generic")
    assert other_host.requests == []


@pytest.mark.parametrize("profile", sorted(_PROFILES))
def test_native_headers_are_stripped_on_a_redirect_to_another_host(
    fake_gateway: FakeGateway, other_host: FakeGateway, profile: str
) -> None:
    fake_gateway.queue_response(
        307, headers={"Location": f"{other_host.base_url}/chat/completions"}
    )
    config = GatewayConfig(base_url=fake_gateway.base_url, header_profile=profile)
    transport = CorrelationTransport(httpx.HTTPTransport(), config)
    with (
        httpx.Client(transport=transport, follow_redirects=True, timeout=5) as client,
        bind_context(**ALL),
    ):
        response = client.post(
            f"{fake_gateway.base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
        )
    assert response.status_code == 200
    assert bool(native(fake_gateway.requests[0].headers)) == (profile != "generic")
    assert fake_gateway.requests[0].headers["x-ai-user"] == "u-42"
    received = other_host.requests[0].headers
    assert native(received) == {}
    assert not any(name.startswith("x-ai-") for name in received)


#: Options that make every profile send every header it can.
EVERYTHING_ON = {
    "helicone": {"session_path": "/chat", "session_name": "Support"},
    "litellm": {"send_tags": "true"},
}


@pytest.mark.parametrize("profile", sorted(_PROFILES))
def test_each_profile_declares_every_native_header_it_sends(profile: str) -> None:
    configured = _get_profile(profile, EVERYTHING_ON.get(profile))
    names = _CorrelationNames()
    sent = {
        name.lower()
        for context in (CorrelationContext(**ALL), CorrelationContext("r"))
        for name, _ in configured.headers(context, names)
    }
    generic = {name.lower() for name, _ in names.pairs()}
    assert sent - generic == {name.lower() for name in configured.native_names}


def test_an_unknown_profile_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        _get_profile("kong")


@pytest.mark.parametrize(
    ("profile", "options", "message"),
    [
        ("envoy", {"tenant": "x"}, "has no option 'tenant'"),
        ("generic", {"session_name": "x"}, "(its options: none)"),
        ("envoy", {"tenant_header": "x tenant"}, "must be a header name"),
        ("litellm", {"send_tags": "yes"}, 'must be "true" or "false"'),
        ("helicone", {"session_name": "two\nlines"}, "up to 128 visible characters"),
    ],
)
def test_a_bad_profile_option_is_a_value_error_naming_it(
    profile: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _get_profile(profile, options)
