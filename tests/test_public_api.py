"""The public API: every public module's ``__all__``, and nothing else public.

A change to the API shows up here as a diff of ``PUBLIC``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import aigw_middleware

PACKAGE_DIR = Path(aigw_middleware.__file__).parent

#: Every public module and its ``__all__``, sorted.
PUBLIC: dict[str, list[str]] = {
    "aigw_middleware": [
        "AsyncChatStream",
        "AsyncGatewayClient",
        "AuthenticationError",
        "BadRequestError",
        "BudgetExceededError",
        "ChatCompletion",
        "ChatCompletionChunk",
        "ChatStream",
        "ConfigurationError",
        "CorrelationContext",
        "Embeddings",
        "GatewayClient",
        "GatewayConfig",
        "GatewayConnectionError",
        "GatewayError",
        "GatewayStatusError",
        "GatewayTimeoutError",
        "ModelList",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "UpstreamError",
        "__version__",
        "async_httpx2_client",
        "async_httpx_client",
        "bind_context",
        "current_context",
        "get_async_client",
        "get_client",
        "httpx2_client",
        "httpx_client",
    ],
    "aigw_middleware.asgi": ["AIGatewayMiddleware"],
    "aigw_middleware.celery": ["install"],
    "aigw_middleware.client": [
        "AsyncChatStream",
        "AsyncGatewayClient",
        "ChatCompletion",
        "ChatCompletionChunk",
        "ChatStream",
        "Embeddings",
        "GatewayClient",
        "ModelList",
        "configure",
        "get_async_client",
        "get_client",
    ],
    "aigw_middleware.config": ["ApiKeyResolver", "GatewayConfig", "TenantResolver"],
    "aigw_middleware.context": [
        "AsyncBoundIterator",
        "BoundIterator",
        "ContextThreadPoolExecutor",
        "CorrelationContext",
        "bind_context",
        "current_context",
        "wrap",
    ],
    "aigw_middleware.django": ["AIGatewayMiddleware", "request_context"],
    "aigw_middleware.django.apps": ["AIGatewayAppConfig"],
    "aigw_middleware.django.checks": [],
    "aigw_middleware.django.conf": [],
    "aigw_middleware.django.middleware": ["AIGatewayMiddleware", "request_context"],
    "aigw_middleware.django.tasks": ["CARRIER_KWARG", "CorrelationTask", "task"],
    "aigw_middleware.dramatiq": ["CorrelationMiddleware"],
    "aigw_middleware.errors": [
        "AuthenticationError",
        "BadRequestError",
        "BudgetExceededError",
        "ConfigurationError",
        "ErrorBody",
        "GatewayConnectionError",
        "GatewayError",
        "GatewayStatusError",
        "GatewayTimeoutError",
        "InvalidRequestError",
        "MalformedResponseError",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "UpstreamError",
    ],
    "aigw_middleware.flask": ["AIGateway"],
    "aigw_middleware.inbound": ["HeaderGetter", "HeaderLookup", "InboundPolicy"],
    "aigw_middleware.log": ["CorrelationFilter", "structlog_processor"],
    "aigw_middleware.openai": ["PLACEHOLDER_API_KEY", "AsyncOpenAI", "OpenAI"],
    "aigw_middleware.profiles": [],
    "aigw_middleware.propagation": ["extract", "inject"],
    "aigw_middleware.retry": [],
    "aigw_middleware.rq": ["CorrelationJob", "CorrelationQueue"],
    "aigw_middleware.testing": ["FakeGateway", "RecordedRequest", "fake_gateway", "main"],
    "aigw_middleware.transport": ["AsyncCorrelationTransport", "CorrelationTransport"],
    "aigw_middleware.wsgi": ["AIGatewayMiddleware"],
}


def module_names() -> list[str]:
    """Every module of the package whose name has no leading underscore."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def test_every_public_module_is_in_the_snapshot() -> None:
    assert sorted(PUBLIC) == module_names()


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_all_is_the_snapshot(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__, key=str.lower) == sorted(PUBLIC[name], key=str.lower)
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.__all__ names {public}, which it lacks"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_other_name_a_module_defines_is_underscored(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {target.id for target in targets if isinstance(target, ast.Name)}
    public = {defined_name for defined_name in defined if not defined_name.startswith("_")}
    assert public <= set(module.__all__)


def test_no_package_module_is_over_450_lines() -> None:
    package = Path(aigw_middleware.__file__).parent
    long = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert long == {}
