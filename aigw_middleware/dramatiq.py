"""Dramatiq: the correlation context travels in each message's options, from sender to worker.

Add :class:`CorrelationMiddleware` to the broker, in the web processes and in the workers::

    broker.add_middleware(CorrelationMiddleware())

- ``before_enqueue`` copies the bound context into the message options (``aigw_request_id``,
  ``aigw_tenant``, ``aigw_team``, ``aigw_user``, ``aigw_session``; see
  :mod:`aigw_middleware.propagation`); outside any context a message gets a fresh request ID of
  its own. Options the sender set (``send_with_options(aigw_tenant=...)``) win, and so do those
  a message already has: a retry, which Dramatiq re-enqueues from the message, keeps its request
  ID.
- ``before_process_message`` binds that context in the worker thread, and
  ``after_process_message`` (also after a failure) or ``after_skip_message`` resets it, so the
  next message on that thread starts clean.

Options with invalid values (not strings, too long, outside their rule) are dropped with one
WARNING; the message is processed with a fresh request ID and never fails for it.
"""

from __future__ import annotations

import threading
from contextvars import Token
from typing import Any

try:
    from dramatiq import Broker, Message, Middleware
    from dramatiq.broker import MessageProxy
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aigw_middleware.dramatiq needs Dramatiq: pip install 'aigw-middleware[dramatiq]'"
    ) from exc

from ._jobs import carrier_at_enqueue, context_from
from .context import CorrelationContext, _reset_context, _set_context

__all__ = ["CorrelationMiddleware"]


class CorrelationMiddleware(Middleware):
    """Carries the correlation context from the sender of a message to the actor that runs it."""

    def __init__(self) -> None:
        # One message at a time per worker thread: its token, kept for the reset.
        self._running = threading.local()

    def before_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        """Add the bound context (outside any context, a fresh request ID) to the message's
        options; options the message already has win."""
        for key, value in carrier_at_enqueue().items():
            message.options.setdefault(key, value)

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """Bind the context the message's options carry in this worker thread."""
        self._unbind()  # a binding no after-hook reset (a middleware raised in between)
        self._running.token = _set_context(context_from(message.options))

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Reset what :meth:`before_process_message` bound, after a success or a failure."""
        self._unbind()

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """Reset what :meth:`before_process_message` bound, for a message a middleware skipped."""
        self._unbind()

    def _unbind(self) -> None:
        token: Token[CorrelationContext | None] | None = self._running.__dict__.pop("token", None)
        if token is None:
            return
        try:
            _reset_context(token)
        except (ValueError, RuntimeError):
            # Made in another context (an actor run elsewhere reset it) or used already.
            _set_context(None)
