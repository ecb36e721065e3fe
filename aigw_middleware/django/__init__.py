"""Django integration: correlation for every request, gateway settings from ``settings.AIGW``.

Add ``"aigw_middleware.django"`` to ``INSTALLED_APPS`` and
``"aigw_middleware.django.AIGatewayMiddleware"`` to ``MIDDLEWARE`` (after
``AuthenticationMiddleware`` when the tenant resolver reads ``request.user``).
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aigw_middleware.django needs Django: pip install 'aigw-middleware[django]'"
    ) from exc

from .middleware import AIGatewayMiddleware, request_context

__all__ = ["AIGatewayMiddleware", "request_context"]
