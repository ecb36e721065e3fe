"""The framework-neutral inbound rules: request-ID choice and the tenant trust policy."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import pytest

from aigw_middleware.config import GatewayConfig
from aigw_middleware.context import CorrelationContext
from aigw_middleware.inbound import InboundPolicy


def getter(headers: dict[str, str]) -> Any:
    lowered = {name.lower(): value for name, value in headers.items()}
    return lambda name: lowered.get(name.lower())


def policy(**config: Any) -> InboundPolicy:
    return InboundPolicy.from_config(GatewayConfig(**config))


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The library's own records: a connection that an earlier test left to the garbage
    collector may log its close from httpcore at any moment (the secrets check keeps every
    logger at its lowest level)."""
    return [r for r in caplog.records if r.name.startswith("aigw_middleware")]


def test_incoming_request_id_is_used_when_valid() -> None:
    assert policy().request_id(getter({"X-AI-Request-Id": "abc-123"})) == "abc-123"


def test_x_request_id_is_the_fallback_header() -> None:
    assert policy().request_id(getter({"X-Request-Id": "from-lb"})) == "from-lb"


def test_first_valid_header_wins() -> None:
    headers = {"X-AI-Request-Id": "<bad>", "X-Request-Id": "good"}
    assert policy().request_id(getter(headers)) == "good"


def test_configured_incoming_headers_replace_the_defaults() -> None:
    p = policy(incoming_request_id_headers=("X-Correlation-Id",))
    assert p.request_id(getter({"X-Correlation-Id": "c-1", "X-AI-Request-Id": "ignored"})) == "c-1"


def test_absent_request_id_is_generated() -> None:
    request_id = policy().request_id(getter({}))
    assert len(request_id) == 32
    int(request_id, 16)


@pytest.mark.parametrize(
    "bad",
    [
        "x" * 500,
        "<script>alert(1)</script>",
        "ünïcode",
        "",
        "a,b",
        "one, two",
        " lead",
        "forged\nINFO aigw: all good",
        "bell\x07\x1b[31mred",
    ],
)
def test_invalid_request_id_is_replaced_and_logged_escaped_and_cut(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        request_id = policy().request_id(getter({"X-AI-Request-Id": bad}))
    assert request_id != bad
    assert len(request_id) == 32
    [record] = ours(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "X-AI-Request-Id" in message
    assert repr(bad[:64]) in message  # quoted, control characters escaped
    assert not any(ord(character) < 32 for character in message)
    assert "x" * 65 not in message


def test_tenant_headers_from_an_untrusted_peer_are_ignored() -> None:
    headers = getter({"X-AI-Tenant": "acme", "X-AI-Team": "ml"})
    assert policy().tenant_and_team(headers, "203.0.113.9") == (None, None)
    p = policy(trust_tenant_headers_from=["10.0.0.0/8"])
    assert p.tenant_and_team(headers, "192.0.2.1") == (None, None)


def test_tenant_headers_from_a_trusted_cidr_are_used() -> None:
    p = policy(trust_tenant_headers_from=["10.0.0.0/8", "::1/128"])
    headers = getter({"X-AI-Tenant": "acme", "X-AI-Team": "ml"})
    assert p.tenant_and_team(headers, "10.1.2.3") == ("acme", "ml")
    assert p.tenant_and_team(headers, "::1") == ("acme", "ml")
    assert p.tenant_and_team(headers, "::ffff:10.0.0.5") == ("acme", "ml")


@pytest.mark.parametrize("peer", [None, "", "not-an-ip", "unix:/tmp/sock"])
def test_unknown_peers_are_never_trusted(peer: str | None) -> None:
    p = policy(trust_tenant_headers_from=["0.0.0.0/0"])
    assert not p.trusts(peer)


def test_invalid_or_duplicated_tenant_headers_are_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = policy(trust_tenant_headers_from=["127.0.0.1"])
    headers = getter({"X-AI-Tenant": "acme,evil", "X-AI-Team": "ml team"})
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        assert p.tenant_and_team(headers, "127.0.0.1") == (None, None)
    assert len(ours(caplog)) == 2


def test_resolver_wins_over_trusted_headers() -> None:
    p = policy(
        trust_tenant_headers_from=["127.0.0.1"], tenant_resolver=lambda request: ("resolved", None)
    )
    headers = getter({"X-AI-Tenant": "header", "X-AI-Team": "header-team"})
    assert p.tenant_and_team(headers, "127.0.0.1", request=object()) == ("resolved", "header-team")


def test_resolver_receives_the_request_and_may_return_none() -> None:
    seen: list[object] = []

    def resolver(request: object) -> None:
        seen.append(request)

    request = object()
    assert policy(tenant_resolver=resolver).tenant_and_team(getter({}), None, request) == (
        None,
        None,
    )
    assert seen == [request]


def test_resolver_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def resolver(request: object) -> tuple[str, str]:
        raise LookupError("no such user")

    with caplog.at_level(logging.ERROR, logger="aigw_middleware"):
        result = policy(tenant_resolver=resolver).tenant_and_team(getter({}), None, object())
    assert result == (None, None)
    assert "resolver failed" in caplog.text


def test_resolver_values_are_validated_and_converted() -> None:
    p = policy(tenant_resolver=lambda request: (42, "bad team"))
    assert p.tenant_and_team(getter({}), None, object()) == ("42", None)


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (("acme", "ml"), ("acme", "ml")),
        (["acme", "ml"], ("acme", "ml")),
        (("acme", None), ("acme", None)),
        ({"tenant": "acme", "team": "ml"}, ("acme", "ml")),
        ({"tenant": "acme"}, ("acme", None)),
        ({"team": "ml"}, (None, "ml")),
        ({}, (None, None)),
    ],
)
def test_resolver_may_return_a_pair_or_a_mapping_of_tenant_and_team(
    returned: object, expected: tuple[str | None, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    p = policy(tenant_resolver=lambda request: returned)

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        assert p.tenant_and_team(getter({}), None, object()) == expected
    assert not ours(caplog)


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param("ab", id="two-character string"),
        pytest.param("acme", id="string"),
        pytest.param({"acme", "ml"}, id="set"),
        pytest.param(frozenset({"acme"}), id="frozenset"),
        pytest.param(("acme",), id="one-tuple"),
        pytest.param(("acme", "ml", "extra"), id="three-tuple"),
        pytest.param({"tenant": "acme", "tenatn": "typo"}, id="mapping with an unknown key"),
        pytest.param({"acme": "ml"}, id="mapping of tenant to team"),
        pytest.param({"tenant": ["acme"]}, id="mapping with a list value"),
        pytest.param(("acme", {"team": "ml"}), id="pair with a dict value"),
        pytest.param((b"acme", "ml"), id="pair with bytes"),
        pytest.param((True, "ml"), id="pair with a bool"),
        pytest.param(iter(("acme", "ml")), id="iterator"),
        pytest.param(42, id="int"),
    ],
)
def test_any_other_resolver_result_is_a_logged_error_and_no_tenant_or_team(
    returned: object, caplog: pytest.LogCaptureFixture
) -> None:
    p = policy(tenant_resolver=lambda request: returned)

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        result = p.tenant_and_team(getter({}), None, object())

    assert result == (None, None)
    [error] = ours(caplog)
    assert error.levelno == logging.ERROR
    assert "tenant resolver returned" in error.getMessage()
    assert "acme" not in error.getMessage()


def test_context_for_builds_the_whole_context() -> None:
    p = policy(trust_tenant_headers_from=["127.0.0.0/8"])
    headers = getter({"X-AI-Request-Id": "r-1", "X-AI-Tenant": "acme"})
    assert p.context_for(headers, "127.0.0.1") == CorrelationContext("r-1", "acme", None)


@pytest.mark.parametrize(
    ("environ", "request_id", "session"),
    [
        (
            {"HTTP_X_AI_REQUEST_ID": "r-1", "HTTP_X_AI_TENANT": "acme", "HTTP_X_AI_SESSION": "s-1"},
            "r-1",
            "s-1",
        ),
        ({"HTTP_X_AI_REQUEST_ID": "not valid", "HTTP_X_REQUEST_ID": "r-2"}, "r-2", None),
        ({"HTTP_X_AI_REQUEST_ID": "r-1", "HTTP_X_AI_SESSION": "chat 7"}, "r-1", None),
        ({}, None, None),
    ],
)
@pytest.mark.parametrize("trusted", [[], ["127.0.0.0/8"]])
def test_context_from_reads_a_lookup_as_context_for_reads_its_getter(
    environ: dict[str, str], request_id: str | None, session: str | None, trusted: list[str]
) -> None:
    p = policy(
        incoming_request_id_headers=("X-AI-Request-Id", "X-Request-Id"),
        trust_tenant_headers_from=trusted,
    )
    made = p.context_from(environ, "127.0.0.1", None, p.environ_keys)
    expected = p.context_for(environ.get, "127.0.0.1", None, p.environ_keys)
    tenant = environ.get("HTTP_X_AI_TENANT") if trusted else None
    assert (made.tenant, made.session) == (expected.tenant, expected.session) == (tenant, session)
    if request_id is None:  # generated, each its own
        assert len({made.request_id, expected.request_id}) == 2
    else:
        assert made.request_id == expected.request_id == request_id


def test_custom_tenant_header_names() -> None:
    p = policy(
        trust_tenant_headers_from=["127.0.0.1"], tenant_header="X-Org", team_header="X-Group"
    )
    headers = getter({"X-Org": "acme", "X-Group": "ml", "X-AI-Tenant": "ignored"})
    assert p.tenant_and_team(headers, "127.0.0.1") == ("acme", "ml")


def test_the_session_comes_from_its_incoming_header_whoever_sent_it() -> None:
    headers = getter({"X-AI-Request-Id": "r-1", "X-AI-Session": "chat-7"})
    assert policy().context_for(headers, "203.0.113.9") == CorrelationContext(
        "r-1", session="chat-7"
    )


def test_a_session_is_never_generated_and_an_invalid_one_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert policy().context_for(getter({}), None).session is None
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        context = policy().context_for(getter({"X-AI-Session": "chat 7\r\n"}), None)
    assert context.session is None
    assert "ignored invalid incoming X-AI-Session header" in caplog.text


def test_the_user_is_trusted_like_the_tenant() -> None:
    headers = getter({"X-AI-User": "u-42", "X-AI-Tenant": "acme"})
    trusted = policy(trust_tenant_headers_from=["10.0.0.0/8"])
    assert policy().context_for(headers, "10.1.2.3").user is None
    assert trusted.context_for(headers, "192.0.2.1").user is None
    assert trusted.context_for(headers, "10.1.2.3").user == "u-42"


def test_an_invalid_user_header_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    p = policy(trust_tenant_headers_from=["127.0.0.1"])
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        assert p.context_for(getter({"X-AI-User": "jane doe"}), "127.0.0.1").user is None
    assert "dropped invalid X-AI-User value" in caplog.text


def test_a_resolver_mapping_may_set_user_and_session_and_its_values_win() -> None:
    p = policy(
        trust_tenant_headers_from=["127.0.0.1"],
        tenant_resolver=lambda request: {"tenant": "acme", "user": "u-1", "session": "s-res"},
    )
    headers = getter({"X-AI-Request-Id": "r-1", "X-AI-User": "u-header", "X-AI-Session": "s-hdr"})
    assert p.context_for(headers, "127.0.0.1", request=object()) == CorrelationContext(
        "r-1", "acme", None, "u-1", "s-res"
    )


def test_a_resolver_user_that_is_invalid_is_dropped() -> None:
    p = policy(tenant_resolver=lambda request: {"user": "u" * 129})
    assert p.context_for(getter({}), None, request=object()).user is None


def test_custom_user_and_session_header_names() -> None:
    p = policy(user_header="X-User", session_header="X-Conversation")
    p_trusted = policy(
        user_header="X-User", session_header="X-Conversation", trust_tenant_headers_from=["::1"]
    )
    headers = getter({"X-User": "u-1", "X-Conversation": "c-1", "X-AI-Session": "ignored"})
    assert p.context_for(headers, None).session == "c-1"
    assert p_trusted.context_for(headers, "::1").user == "u-1"


async def test_an_async_resolver_is_awaited_by_the_async_context() -> None:
    async def resolver(request: object) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"tenant": "acme", "user": "u-1"}

    p = policy(tenant_resolver=resolver)
    context = await p.acontext_for(getter({"X-AI-Request-Id": "req-1"}), None, object())

    assert p.resolver_is_async
    assert (context.request_id, context.tenant, context.user) == ("req-1", "acme", "u-1")


async def test_the_async_context_calls_a_sync_resolver_in_line() -> None:
    p = policy(tenant_resolver=lambda request: ("acme", "ml"))

    context = await p.acontext_for(getter({}), None, object())

    assert not p.resolver_is_async
    assert (context.tenant, context.team) == ("acme", "ml")


async def test_an_async_resolver_that_raises_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def resolver(request: object) -> tuple[str, str]:
        raise RuntimeError("directory down")

    context = await policy(tenant_resolver=resolver).acontext_for(getter({}), None, object())

    assert context.tenant is None
    assert "resolver failed" in caplog.text


def test_an_object_with_an_async_call_and_a_partial_count_as_async_resolvers() -> None:
    class Resolver:
        async def __call__(self, request: object) -> None:
            return None

    async def resolve(request: object, team: str) -> tuple[str, str]:
        return "acme", team

    assert policy(tenant_resolver=Resolver()).resolver_is_async
    assert policy(tenant_resolver=functools.partial(resolve, team="ml")).resolver_is_async
    assert not policy(tenant_resolver=lambda request: None).resolver_is_async


def test_an_async_resolver_called_from_sync_code_is_a_logged_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def resolver(request: object) -> tuple[str, str]:
        return "acme", "ml"

    # pytest turns the warning for a coroutine that was never awaited into an error.
    context = policy(tenant_resolver=resolver).context_for(getter({}), None, object())

    assert context.tenant is None
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert "resolver is async" in error.getMessage()
