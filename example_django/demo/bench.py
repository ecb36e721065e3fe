"""A view for the benchmarks (bench/e2e.py): one gateway call, made the way ``?client=`` says.

- ``shared``: the shared client, ``get_client()`` (what the docs recommend)
- ``per_request``: a new ``httpx.Client`` for this request only, sending through
  ``CorrelationTransport`` (the pattern of an app that makes a client where it calls)
- ``aigw_per_request``: a new ``GatewayClient`` for this request only (it shares the process's
  TLS context, so it is much cheaper to build than a plain ``httpx.Client``)
- ``openai_per_request``: a new OpenAI SDK client (``aigw_middleware.openai.OpenAI``)
- ``plain``: a shared plain httpx client without correlation, for the no-correlation baseline
"""

from __future__ import annotations

import functools

import httpx
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from aigw_middleware import GatewayClient, current_context, get_client
from aigw_middleware.transport import CorrelationTransport

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
WAYS = ("shared", "per_request", "aigw_per_request", "openai_per_request", "plain")


@functools.cache
def plain_client() -> httpx.Client:
    return httpx.Client(base_url=settings.AIGW["BASE_URL"] + "/", trust_env=False)


def answer(way: str) -> str:
    if way == "shared":
        return get_client().chat.completions.create(model=MODEL, messages=MESSAGES).content
    if way == "per_request":
        config = get_client().config
        transport = CorrelationTransport(httpx.HTTPTransport(), config)
        with httpx.Client(
            base_url=f"{config.base_url}/", transport=transport, trust_env=False
        ) as http:
            response = http.post("chat/completions", json={"model": MODEL, "messages": MESSAGES})
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])
    if way == "aigw_per_request":
        with GatewayClient(get_client().config) as client:
            return client.chat.completions.create(model=MODEL, messages=MESSAGES).content
    if way == "openai_per_request":
        from aigw_middleware.openai import OpenAI

        with OpenAI() as sdk:
            completion = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
            return completion.choices[0].message.content or ""
    response = plain_client().post("chat/completions", json={"model": MODEL, "messages": MESSAGES})
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def bench_call(request: HttpRequest) -> JsonResponse:
    way = request.GET.get("client", "shared")
    if way not in WAYS:
        return JsonResponse({"error": f"client must be one of {', '.join(WAYS)}"}, status=400)
    context = current_context()
    return JsonResponse({"request_id": context and context.request_id, "answer": answer(way)})
