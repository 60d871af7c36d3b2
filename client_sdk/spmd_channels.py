"""The connection between two ranks of an SPMD job, plain TCP or TLS, as a
:class:`client_sdk.spmd_frames.Channel`: gathered writes, reads that fill large buffers
directly, and a readiness check, so that a receiver may wait on the connection itself.

TLS goes through memory BIOs (one lock per connection), since a rank reads a connection in
one thread while others write to it, which an ``ssl.SSLSocket`` does not allow.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import ssl
import threading
from collections import deque
from typing import Any

from client_sdk.spmd_frames import Channel

_TLS_CHUNK = 1 << 20  # bytes encrypted at a time
_READ_AHEAD = 1 << 16  # bytes a plain connection reads ahead (reads this large go direct)


def _sendmsg_all(sock: socket.socket, parts: list[Any]) -> None:
    """Send every byte of ``parts`` without joining them (gathered writes)."""
    if len(parts) == 1:  # a small message, in one piece
        sock.sendall(parts[0])
        return
    views = deque(memoryview(part).cast("B") for part in parts if len(part))
    while views:
        sent = sock.sendmsg(list(itertools.islice(views, 64)))
        while sent:
            if sent >= len(views[0]):
                sent -= len(views.popleft())
            else:
                views[0] = views[0][sent:]
                sent = 0


def _wait_readable(pollers: threading.local, sock: socket.socket, timeout: float | None) -> bool:
    """Whether ``sock`` has a byte to read (or its end) within ``timeout`` seconds.
    ``pollers`` holds each thread's poll object (one is not for two threads at once)."""
    poller = getattr(pollers, "poller", None)
    if poller is None:
        poller = pollers.poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, round(timeout * 1000))))


class _Plain:
    """A TCP connection: gathered writes; reads through a small read-ahead buffer, large
    ones straight into their destination."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._ahead = memoryview(bytearray(_READ_AHEAD))  # received, not yet read
        self._start = self._end = 0
        self._pollers = threading.local()

    def send(self, parts: list[Any]) -> None:
        _sendmsg_all(self.sock, parts)

    def readable(self, timeout: float | None) -> bool:
        return self._start < self._end or _wait_readable(self._pollers, self.sock, timeout)

    def read_into(self, view: memoryview) -> None:
        got = min(len(view), self._end - self._start)
        view[:got] = self._ahead[self._start : self._start + got]
        self._start += got
        while got < len(view):
            if len(view) - got >= _READ_AHEAD:
                count = self.sock.recv_into(view[got:])
            else:
                count = self.sock.recv_into(self._ahead)
                take = min(count, len(view) - got)
                view[got : got + take] = self._ahead[:take]
                self._start, self._end = take, count
                count = take
            if not count:
                raise EOFError("the connection was closed")
            got += count

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


class _Tls(_Plain):
    """TLS over a TCP connection through memory BIOs: one thread may read while another
    writes. ``host`` None: the server side."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, host: str | None) -> None:
        self.sock = sock
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=host is None, server_hostname=host
        )
        self._lock = threading.Lock()
        self._pollers = threading.local()
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self._outgoing.read())
                self._fill()
        self.sock.sendall(self._outgoing.read())

    def _fill(self) -> None:
        data = self.sock.recv(1 << 18)
        if not data:
            raise EOFError("the connection was closed")
        with self._lock:
            self._incoming.write(data)

    def send(self, parts: list[Any]) -> None:
        pending: list[bytes] = []
        for part in parts:
            view = memoryview(part).cast("B")
            for start in range(0, len(view), _TLS_CHUNK):
                with self._lock:
                    self._tls.write(view[start : start + _TLS_CHUNK])
                    pending.append(self._outgoing.read())
                if len(pending[-1]) >= _TLS_CHUNK // 2:
                    _sendmsg_all(self.sock, pending)
                    pending.clear()
        _sendmsg_all(self.sock, pending)

    def readable(self, timeout: float | None) -> bool:
        if self._tls.pending() or self._incoming.pending:
            return True
        return _wait_readable(self._pollers, self.sock, timeout)

    def read_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            try:
                with self._lock:
                    count = self._tls.read(len(view) - got, view[got:])
            except ssl.SSLWantReadError:
                self._fill()
                continue
            except ssl.SSLZeroReturnError:
                count = 0
            if not count:
                raise EOFError("the connection was closed")
            got += count

    def close(self) -> None:
        self.shutdown()
        self.sock.close()


def open_channel(sock: socket.socket, context: ssl.SSLContext | None, host: str | None) -> Channel:
    """``sock`` as a channel, TLS when ``context`` is given (``host`` None: server side)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return _Plain(sock) if context is None else _Tls(sock, context, host)
