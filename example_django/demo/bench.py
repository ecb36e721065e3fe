"""A view for the benchmarks (bench/e2e.py): one gateway call, made the way ``?client=`` says.

- ``shared``: the shared client, ``get_client()`` (what the docs recommend)
- ``per_request``: a new ``GatewayClient`` (a new httpx client) for this request only
- ``openai_per_request``: a new OpenAI SDK client (``aigw_middleware.openai.OpenAI``)
- ``plain``: a shared plain httpx client without correlation, for the no-correlation baseline
"""

from __future__ import annotations

import functools

import httpx
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from aigw_middleware import GatewayClient, current_context, get_client

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@functools.cache
def plain_client() -> httpx.Client:
    return httpx.Client(base_url=settings.AIGW["BASE_URL"] + "/", trust_env=False)


def answer(way: str) -> str:
    if way == "shared":
        return get_client().chat.completions.create(model=MODEL, messages=MESSAGES).content
    if way == "per_request":
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
    if way not in ("shared", "per_request", "openai_per_request", "plain"):
        return JsonResponse(
            {"error": "client must be shared, per_request, openai_per_request or plain"}, status=400
        )
    context = current_context()
    return JsonResponse({"request_id": context and context.request_id, "answer": answer(way)})
