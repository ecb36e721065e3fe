"""The headers class the correlation transport gives the requests it adds headers to: every
look-up answers as httpx's own ``Headers`` on the same list, whatever changed since the last."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import httpx
import pytest

from aigw_middleware import GatewayConfig, bind_context
from aigw_middleware._httpx import IndexedHeaders, indexed
from aigw_middleware.transport import CorrelationTransport

LISTS: list[list[tuple[str | bytes, str | bytes]]] = [
    [],
    [("Host", "gateway.test"), ("Accept", "*/*"), ("X-AI-Tenant", "acme")],
    [("Accept", "text/html"), ("accept", "application/json"), ("ACCEPT", "*/*")],
    [("X-Name", "caf\u00e9".encode()), ("Other", "1")],  # utf-8
    [("X-Name", b"caf\xe9"), ("Other", "1")],  # iso-8859-1
]


def same_answers(fast: httpx.Headers, plain: httpx.Headers) -> None:
    assert list(fast.keys()) == list(plain.keys())
    assert dict(fast) == dict(plain)
    for name in [*plain.keys(), "Missing", "x-name", "X-NAME", "accept"]:
        expected: object
        try:
            expected = plain[name]
        except KeyError:
            with pytest.raises(KeyError):
                fast[name]
            assert fast.get(name, "default") == "default"
        else:
            assert fast[name] == expected
            assert fast.get(name) == expected


def twin(items: list[tuple[str | bytes, str | bytes]]) -> tuple[httpx.Headers, httpx.Headers]:
    fast = httpx.Headers(items)
    indexed(fast)
    assert type(fast) is IndexedHeaders
    return fast, httpx.Headers(items)


MUTATIONS: list[Callable[[httpx.Headers], None]] = [
    lambda headers: headers.__setitem__("Accept", "text/plain"),
    lambda headers: headers.__setitem__("X-New", "new"),
    lambda headers: headers.update({"x-new": "1", "Other": "2"}),
    lambda headers: headers._list.append((b"Accept", b"accept", b"again")),
    lambda headers: headers._list.insert(0, (b"X-First", b"x-first", b"first")),
    lambda headers: headers._list.clear(),
    lambda headers: setattr(headers, "encoding", "iso-8859-1"),
]


@pytest.mark.parametrize("items", LISTS)
@pytest.mark.parametrize("mutate", MUTATIONS)
def test_every_look_up_answers_as_httpx_before_and_after_a_change(
    items: list[tuple[str | bytes, str | bytes]], mutate: Callable[[httpx.Headers], None]
) -> None:
    fast, plain = twin(items)
    same_answers(fast, plain)  # builds the index
    if "X-Name" in plain:
        with pytest.raises(KeyError):
            del fast["x-absent"]
    mutate(fast)
    mutate(plain)
    same_answers(fast, plain)
    assert repr(fast) == repr(plain)
    assert fast == plain


def test_a_list_httpx_cannot_decode_fails_as_it_does_and_only_for_that_name() -> None:
    fast, plain = twin([("Good", "yes")])
    same_answers(fast, plain)
    for headers in (fast, plain):
        headers._list.append((b"Bad", b"bad", b"caf\xc3\xa9"))  # not ASCII, the encoding set
    assert fast["good"] == plain["good"] == "yes"
    with pytest.raises(UnicodeDecodeError):
        plain["bad"]
    with pytest.raises(UnicodeDecodeError):
        fast["bad"]


def test_other_headers_classes_are_left_as_they_are() -> None:
    class Mine(httpx.Headers):
        pass

    headers = Mine({"a": "1"})
    indexed(headers)
    assert type(headers) is Mine


def test_a_users_client_sees_the_headers_sent_and_keeps_its_cookies() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"}, json={})

    config = GatewayConfig(base_url="http://gateway.test/ai")
    client = httpx.Client(transport=CorrelationTransport(httpx.MockTransport(gateway), config))
    with bind_context(request_id="req-1", tenant="acme", team="ml"):
        response = client.get("http://gateway.test/ai/models", headers={"X-Mine": "1"})
    sent = response.request.headers
    assert isinstance(sent, httpx.Headers)
    assert sent["x-ai-request-id"] == "req-1"
    assert dict(sent) == dict(httpx.Headers(sent))
    assert {"x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-mine"} <= set(dict(sent))
    assert repr(sent).startswith("Headers({")
    assert client.cookies.get("session") == "abc"  # the user's client still reads cookies
    with bind_context(request_id="req-2", tenant="acme", team="ml"):
        again = client.get("http://gateway.test/ai/models")
    assert again.request.headers["cookie"] == "session=abc"
    assert again.request.headers["x-ai-request-id"] == "req-2"


def test_a_sent_request_pickles_and_copies_as_httpx_headers() -> None:
    config = GatewayConfig(base_url="http://gateway.test/ai")
    transport = CorrelationTransport(httpx.MockTransport(lambda r: httpx.Response(200)), config)
    with httpx.Client(transport=transport) as client, bind_context(request_id="req-1"):
        sent = client.get(
            "http://gateway.test/ai/models", headers={"X-Mine": "caf\u00e9".encode()}
        ).request

    again = pickle.loads(pickle.dumps(sent))
    copied = copy.deepcopy(sent.headers)

    for headers in (again.headers, copied):
        assert type(headers) is httpx.Headers
        assert headers.raw == sent.headers.raw
        assert headers["x-mine"] == sent.headers["x-mine"]
    assert again.headers["x-ai-request-id"] == "req-1"
