"""A :class:`Client`: one gateway, its settings, connections and coalescer; and the
default client that ``@compute_this`` functions and ``Job.from_id`` use unless given one.

    client = Client("https://gpu-farm:5000", token="...", ca="ca.pem")

    @compute_this(client=client)          # this function's jobs go to that gateway
    def f(x): ...

    square.with_client(client).compute(3)  # another function, bound to it too
    Job.from_id(job_id, client=client)

One process may hold several clients, each talking to its own gateway. Without a
client, the default one is used: built from ``COMPUTETHIS_URL`` / ``COMPUTETHIS_TOKEN``
/ ``COMPUTETHIS_CA`` when first needed, replaced by :func:`configure`.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from client_sdk.coalesce import Coalescer
from client_sdk.config import Settings
from client_sdk.transport import Transport


class Client:
    """A connection to one computethis gateway, safe to share between threads.

    ``url``, ``token`` and ``ca`` (a PEM file of the CA that signed an ``https://``
    gateway's certificate): each one not given comes from ``COMPUTETHIS_URL``,
    ``COMPUTETHIS_TOKEN`` or ``COMPUTETHIS_CA``, read now (the URL defaults to
    ``http://127.0.0.1:5000``).

    It holds what its jobs share: :attr:`settings`; :attr:`transport`, one kept-alive
    connection per thread; :attr:`coalescer`, which sends the ``compute`` calls that its
    threads make at the same time together (see :mod:`client_sdk.coalesce`). A forked
    child's clients open connections of their own. A client pickles as its settings.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, ca: str | None = None
    ) -> None:
        self.settings = Settings.from_environment(url, token, ca)
        self.transport = Transport(self.settings)
        self.coalescer = Coalescer(self.transport)
        _clients.add(self)

    def __repr__(self) -> str:
        return f"<computethis Client {self.settings.url}>"

    def __reduce__(self) -> tuple[Any, ...]:
        settings = self.settings
        return (type(self), (settings.url, settings.token, settings.ca))

    def _after_fork_in_child(self) -> None:
        self.transport.forget_connections()
        self.coalescer.forget_calls()


_clients: weakref.WeakSet[Client] = weakref.WeakSet()  # for a forked child to reset
_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client of functions and jobs not bound to one: the last :func:`configure` or
    :func:`set_default_client`, else one built from the environment on first use."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = Client()
            client = _default
    return client


def configure(url: str | None = None, token: str | None = None, ca: str | None = None) -> Client:
    """Point the default client at a gateway: override ``COMPUTETHIS_URL``,
    ``COMPUTETHIS_TOKEN`` or ``COMPUTETHIS_CA`` in this process.

    Settings not given keep their current value. Returns the new default client; calls
    already in flight finish on the one before.
    """
    current = default_client().settings
    client = Client(url or current.url, token or current.token, ca or current.ca)
    set_default_client(client)
    return client


def set_default_client(client: Client | None) -> Client | None:
    """Make ``client`` the default client; ``None`` forgets :func:`configure`, so the
    next use builds one from the environment again.

    Returns the default before (``None`` if it was still to be built), so that a test
    can put it back.
    """
    global _default
    with _default_lock:
        previous, _default = _default, client
    return previous


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for client in list(_clients):
        client._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
