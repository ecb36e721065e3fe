"""Typed entry points: user code calling the documented API passes ``mypy --strict`` as is, with
the concrete result types inferred (no ``Any``, no ``type: ignore``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
from __future__ import annotations

import openai.types.chat
from django.http import HttpRequest, JsonResponse
from typing_extensions import assert_type

from aigw_middleware import (
    AsyncChatStream,
    ChatCompletion,
    ChatCompletionChunk,
    ChatStream,
    CorrelationContext,
    Embeddings,
    ModelList,
    get_async_client,
    get_client,
)
from aigw_middleware.django import request_context
from aigw_middleware.openai import AsyncOpenAI, OpenAI

MESSAGES = [{"role": "user", "content": "hi"}]


def sync_calls() -> str:
    client = get_client()
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_type(answer, ChatCompletion)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert_type(stream, ChatStream)
    with stream:
        for chunk in stream:
            assert_type(chunk, ChatCompletionChunk)
    assert_type(client.embeddings.create(model="e", input=["a"]), Embeddings)
    assert_type(client.models.list(), ModelList)
    return answer.content


async def async_calls() -> str:
    client = get_async_client()
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_type(answer, ChatCompletion)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert_type(stream, AsyncChatStream)
    async for chunk in stream:
        assert_type(chunk, ChatCompletionChunk)
    assert_type(await client.embeddings.create(model="e", input="a"), Embeddings)
    assert_type(await client.models.list(), ModelList)
    return answer.content


def sdk_calls() -> str | None:
    completion = OpenAI().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(completion, openai.types.chat.ChatCompletion)
    assert_type(OpenAI().with_options(timeout=5), OpenAI)
    return completion.choices[0].message.content


async def async_sdk_calls() -> str | None:
    completion = await AsyncOpenAI().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert_type(completion, openai.types.chat.ChatCompletion)
    return completion.choices[0].message.content


def view(request: HttpRequest) -> JsonResponse:
    context = request_context(request)
    assert_type(context, CorrelationContext)
    return JsonResponse({"request_id": context.request_id, "tenant": context.tenant})
"""


def run_mypy(command: list[str]) -> subprocess.CompletedProcess[str]:
    # The package from this checkout (an editable install is invisible to mypy otherwise).
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    command = [*command, "--cache-dir", str(ROOT / ".mypy_cache" / "user-code")]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_documented_calls_type_check_strictly_with_concrete_types(tmp_path: Path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(USER_CODE)
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file=", str(user_file)]
    result = run_mypy(command)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Success: no issues found in 1 source file" in output


def test_a_wrong_expectation_fails_the_type_check(tmp_path: Path) -> None:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(
        "from typing_extensions import assert_type\n"
        "from aigw_middleware import ChatStream, get_client\n"
        "answer = get_client().chat.completions.create(model='m', messages=[])\n"
        "assert_type(answer, ChatStream)\n"
    )
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file=", str(user_file)]
    result = run_mypy(command)
    assert result.returncode == 1
    assert 'Expression is of type "ChatCompletion", not "ChatStream"' in result.stdout
