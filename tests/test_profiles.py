"""Gateway header profiles, as the gateway receives them through the real client and transport."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from aigw_middleware import GatewayClient, GatewayConfig, bind_context
from aigw_middleware.context import CorrelationContext
from aigw_middleware.profiles import PROFILES, CorrelationNames, get_profile
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import CorrelationTransport

MESSAGES = [{"role": "user", "content": "hi"}]
NATIVE_PREFIXES = ("helicone-", "x-portkey-", "x-litellm-")


def native(headers: httpx.Headers) -> dict[str, str]:
    """The gateway-native correlation headers among ``headers``."""
    return {name: value for name, value in headers.items() if name.startswith(NATIVE_PREFIXES)}


def call(config: GatewayConfig, profile: str, **bound: str) -> None:
    """One chat completion with ``profile``, inside a context bound with ``bound`` if given."""
    with GatewayClient(config, header_profile=profile) as client:
        if bound:
            with bind_context(**bound):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_generic_sends_the_three_x_ai_headers_and_nothing_native(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "generic", request_id="req-1", tenant="acme", team="ml")
    headers = fake_gateway.requests[0].headers
    assert (headers["x-ai-request-id"], headers["x-ai-tenant"], headers["x-ai-team"]) == (
        "req-1",
        "acme",
        "ml",
    )
    assert native(headers) == {}


def test_helicone_sends_request_id_tenant_and_team_as_custom_properties(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "helicone", request_id="req-1", tenant="acme", team="ml")
    assert native(fake_gateway.requests[0].headers) == {
        "helicone-property-request-id": "req-1",
        "helicone-property-tenant": "acme",
        "helicone-property-team": "ml",
    }


def test_helicone_leaves_out_the_properties_of_absent_tenant_and_team(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "helicone", request_id="req-1")
    assert native(fake_gateway.requests[0].headers) == {"helicone-property-request-id": "req-1"}


def test_portkey_sends_the_request_id_as_trace_id_and_forwards_the_three_headers(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "portkey", request_id="req-1", tenant="acme", team="ml")
    headers = fake_gateway.requests[0].headers
    assert headers["x-portkey-trace-id"] == "req-1"
    assert headers["x-portkey-forward-headers"] == "x-ai-request-id,x-ai-tenant,x-ai-team"


@pytest.mark.parametrize(
    ("profile", "header"),
    [("portkey", "x-portkey-metadata"), ("litellm", "x-litellm-spend-logs-metadata")],
)
def test_the_metadata_header_is_a_json_object_of_the_context(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway, profile: str, header: str
) -> None:
    call(gateway_config, profile, request_id="req-1", tenant="acme", team="ml")
    call(gateway_config, profile, request_id="req-2")
    first, second = (json.loads(request.headers[header]) for request in fake_gateway.requests)
    assert first == {"request_id": "req-1", "tenant": "acme", "team": "ml"}
    assert second == {"request_id": "req-2"}


def test_portkey_metadata_values_are_strings_within_its_128_character_limit(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    longest = {"request_id": "r" * 128, "tenant": "t" * 64, "team": "m" * 64}
    call(gateway_config, "portkey", **longest)
    metadata = json.loads(fake_gateway.requests[0].headers["x-portkey-metadata"])
    assert metadata == longest
    assert all(isinstance(value, str) and len(value) <= 128 for value in metadata.values())


def test_portkey_forwards_the_configured_header_names(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    config = gateway_config.replace(request_id_header="X-Correlation-Id", tenant_header="X-Org")
    call(config, "portkey", request_id="req-1", tenant="acme")
    headers = fake_gateway.requests[0].headers
    assert headers["x-correlation-id"] == "req-1"
    assert headers["x-portkey-forward-headers"] == "x-correlation-id,x-org,x-ai-team"


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


def test_litellm_sends_the_request_id_as_trace_id_and_a_uuid_call_id(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    call(gateway_config, "litellm", request_id="req-1", tenant="acme", team="ml")
    headers = fake_gateway.requests[0].headers
    assert headers["x-litellm-trace-id"] == "req-1"
    assert uuid.UUID(headers["x-litellm-call-id"]).version == 4


def test_litellm_call_id_is_fresh_on_every_retry_while_the_trace_id_stays(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(429, headers={"retry-after-ms": "1"}, times=2)
    call(gateway_config, "litellm", request_id="req-1")
    attempts = fake_gateway.requests
    assert len(attempts) == 3
    assert {request.headers["x-litellm-trace-id"] for request in attempts} == {"req-1"}
    assert len({request.headers["x-litellm-call-id"] for request in attempts}) == 3


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


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_native_headers_go_only_to_the_gateway(
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    other_host: FakeGateway,
    profile: str,
) -> None:
    with (
        GatewayClient(gateway_config, header_profile=profile) as client,
        bind_context(request_id="req-1", tenant="acme", team="ml"),
    ):
        client.request("GET", "models")
        client.request("GET", f"{other_host.base_url}/models")
    managed = {name.lower() for name in get_profile(profile).native_names}
    assert set(native(fake_gateway.requests[0].headers)) == managed
    assert native(other_host.requests[0].headers) == {}
    assert "x-ai-request-id" not in other_host.requests[0].headers


@pytest.mark.parametrize("profile", sorted(PROFILES))
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
        bind_context(request_id="req-1", tenant="acme", team="ml"),
    ):
        response = client.post(
            f"{fake_gateway.base_url}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
        )
    assert response.status_code == 200
    assert len(native(fake_gateway.requests[0].headers)) == len(get_profile(profile).native_names)
    received = other_host.requests[0].headers
    assert native(received) == {}
    assert not any(name.startswith("x-ai-") for name in received)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_declares_every_native_header_it_sends(profile: str) -> None:
    names = CorrelationNames()
    sent = {
        name.lower()
        for name, _ in get_profile(profile).headers(CorrelationContext("r", "t", "m"), names)
    }
    generic = {names.request_id.lower(), names.tenant.lower(), names.team.lower()}
    assert sent - generic == {name.lower() for name in get_profile(profile).native_names}


def test_an_unknown_profile_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        get_profile("kong")
