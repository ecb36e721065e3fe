"""aigw-middleware: end-to-end correlation between web apps and their AI gateway.

Framework middleware binds the incoming request's ID, tenant and team into one ContextVar; the
shared client reads it and adds ``X-AI-Request-Id``, ``X-AI-Tenant`` and ``X-AI-Team`` to every
call to the gateway, and only to the gateway.
"""

from ._http_clients import async_httpx2_client, async_httpx_client, httpx2_client, httpx_client
from ._version import __version__
from .client import (
    AsyncChatStream,
    AsyncGatewayClient,
    ChatCompletion,
    ChatCompletionChunk,
    ChatStream,
    Embeddings,
    GatewayClient,
    ModelList,
    get_async_client,
    get_client,
)
from .config import GatewayConfig
from .context import CorrelationContext, bind_context, current_context
from .errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigurationError,
    GatewayConnectionError,
    GatewayError,
    GatewayStatusError,
    GatewayTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
)

__all__ = [
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
]
