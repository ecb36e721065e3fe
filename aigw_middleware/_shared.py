"""The shared clients: which ones are active here, and one set of them per config.

The :class:`SharedClients` of an adapter with a config of its own ride on the correlation
context it binds (:func:`~aigw_middleware.context._carried`): the ASGI and WSGI middleware's for
their requests, Flask's for a streamed body that runs after its app context is gone. Inside
an app context, Flask's are found through it (:func:`add_app_finder`), also with no request.
Where none says, the process default serves: the environment's config, or the one given to
:func:`configure` (the Django app does that with ``settings.AIGW``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, cast

from . import client as _client
from .config import GatewayConfig
from .context import _carried, _current

if TYPE_CHECKING:
    from .client import AsyncGatewayClient, GatewayClient

#: The attribute of an event loop that keeps its async clients, so that they live exactly as
#: long as the loop: a weak map cannot, since each client's pool and closer refer to the loop.
_LOOP_ATTRIBUTE = "_aigw_shared_clients"


class SharedClients:
    """One sync client per process and one async client per running event loop, for a config.

    A forked child (gunicorn ``--preload``, multiprocessing) makes its own sync client on first
    use and leaves the one it inherited alone: its pooled sockets are the parent's, so the
    child neither reads from them nor closes them.

    Async clients belong to their loop (held by the loop itself, or, for loops that take no
    attributes, in a map that drops closed loops), so a client is never used on a loop other
    than its own and never keeps a dead loop alive; each is closed when its loop shuts down its
    async generators (``asyncio.run`` and ``asgiref.async_to_sync`` both do).
    """

    def __init__(self, config: GatewayConfig | Callable[[], GatewayConfig]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._sync: GatewayClient | None = None
        self._pid = os.getpid()
        _all.add(self)

    @property
    def config(self) -> GatewayConfig:
        """The config, loaded on first use when given as a factory."""
        if callable(self._config):
            with self._lock:
                if callable(self._config):
                    self._config = self._config()
        return self._config

    def client(self) -> GatewayClient:
        """The shared sync client of this process."""
        client = self._sync
        if client is None or self._pid != os.getpid():
            config = self.config
            with self._lock:
                if self._pid != os.getpid():
                    self._forget_parents()
                if self._sync is None:
                    self._sync = _client.GatewayClient(config)
                client = self._sync
        return client

    def _forget_parents(self) -> None:
        """In a forked child: drop the parent's client without closing it (its sockets are the
        parent's) and keep it referenced, so that no finaliser ever closes them either."""
        if self._sync is not None:
            _inherited.append(self._sync)
        self._sync = None
        self._pid = os.getpid()

    def async_client(self) -> AsyncGatewayClient:
        """The async client of the running event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "get_async_client() needs a running event loop; call it from async code"
            ) from None
        clients = _clients_of(loop)
        entry = clients.get(self)
        if entry is not None and not entry[0].is_closed:
            return entry[0]
        client = _client.AsyncGatewayClient(self.config)
        closer = _closer(client, weakref.ref(clients), weakref.ref(self))
        # Starting the generator registers it with the loop, whose shutdown_asyncgens() then
        # closes the client on the loop that owns its connections. It stops at its first
        # ``yield`` at once, so it is stepped here rather than in a task.
        with contextlib.suppress(StopIteration):
            closer.__anext__().send(None)
        clients[self] = (client, closer)
        return client

    def close(self) -> None:
        """Close the sync client; async clients close with their loops."""
        with self._lock:
            if self._pid != os.getpid():
                self._forget_parents()
            client, self._sync = self._sync, None
        if client is not None:
            client.close()


#: Every SharedClients, so that a forked child can reset them all before any other code runs.
_all: weakref.WeakSet[SharedClients] = weakref.WeakSet()
#: Clients a forked child inherited: never used, never closed by the child.
_inherited: list[GatewayClient] = []


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at fork time would never be released here.
    for shared in list(_all):
        shared._lock = threading.Lock()
        shared._forget_parents()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_Clients = weakref.WeakKeyDictionary[
    SharedClients, "tuple[AsyncGatewayClient, AsyncGenerator[None, None]]"
]
# For loops without instance attributes (uvloop's): closed loops are dropped at each lookup.
_unattributed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clients] = (
    weakref.WeakKeyDictionary()
)
_unattributed_lock = threading.Lock()


def _clients_of(loop: asyncio.AbstractEventLoop) -> _Clients:
    clients: _Clients | None = getattr(loop, _LOOP_ATTRIBUTE, None)
    if clients is not None:
        return clients
    clients = weakref.WeakKeyDictionary()
    try:
        setattr(loop, _LOOP_ATTRIBUTE, clients)
        # Weakly: a loop that referred to itself would wait for the cyclic collector.
        loop.close = functools.partial(_close_clients_then, weakref.ref(loop), clients)  # type: ignore[method-assign]
    except AttributeError:
        with _unattributed_lock:
            for closed in [known for known in _unattributed if known.is_closed()]:
                del _unattributed[closed]
            clients = _unattributed.setdefault(loop, clients)
    return clients


def _close_clients_then(
    loop_ref: weakref.ref[asyncio.AbstractEventLoop], clients: _Clients
) -> None:
    """``loop.close()``, after closing the loop's clients on it when nothing did yet.

    A loop closed without ``shutdown_asyncgens()`` (some loop runners and test fixtures do
    that) would leave its clients' pooled sockets open until the garbage collector finds them;
    here they close with the loop, on the loop that owns them. Where the loop cannot run (it
    is running, or another loop runs in this thread), the collector is left to do it.
    """
    loop = loop_ref()
    if loop is None:  # pragma: no cover - the loop is being called, so it is alive
        return
    if clients and not loop.is_running() and not loop.is_closed() and not _in_running_loop():
        with contextlib.suppress(Exception):
            for _, closer in list(clients.values()):
                loop.run_until_complete(closer.aclose())
    type(loop).close(loop)


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _closer(
    client: AsyncGatewayClient,
    clients: weakref.ref[_Clients],
    shared: weakref.ref[SharedClients],
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        owner, held = shared(), clients()
        if owner is not None and held is not None and held.get(owner, (None,))[0] is client:
            del held[owner]
        await client.aclose()


_default = SharedClients(GatewayConfig.from_env)
_default_lock = threading.Lock()


#: Each returns the shared clients of the framework app served here (Flask's current app), or
#: None; asked only by ``get_client()`` calls, so that requests pay nothing for it.
_app_finders: list[Callable[[], SharedClients | None]] = []


def active() -> SharedClients:
    """The shared clients that serve ``get_client()`` here: the adapter's, else the default."""
    carried = _carried(_current.get())
    if carried is not None:  # an adapter's, carried by the context it bound
        return cast(SharedClients, carried)
    for find in _app_finders:
        clients = find()
        if clients is not None:
            return clients
    return _default


def add_app_finder(find: Callable[[], SharedClients | None]) -> None:
    """Let ``get_client()`` ask ``find`` for the current app's clients (once per ``find``)."""
    if find not in _app_finders:
        _app_finders.append(find)


def configure(config: GatewayConfig | Callable[[], GatewayConfig] | None) -> None:
    """Set the process-wide config behind :func:`~aigw_middleware.get_client` (None: back to the
    environment), for code that runs outside any framework adapter's app.

    The previous shared sync client is closed.
    """
    global _default
    with _default_lock:
        old, _default = _default, SharedClients(config or GatewayConfig.from_env)
    old.close()


def current_config() -> GatewayConfig:
    """The config ``get_client()`` would use here and now."""
    return active().config
