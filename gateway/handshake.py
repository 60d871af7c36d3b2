"""TLS handshakes off the accept loop: an HTTPS connection waits, like any silent one,
until its client's first bytes arrive; then a worker thread shakes hands."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot.server import HTTPConnection


class _NotReading:
    closed = False


class PendingHandshake:
    """An accepted HTTPS connection before its TLS handshake. It waits in the selector
    like any silent connection; once the client's first bytes arrive, a worker thread
    shakes hands within the header timeout and serves it as a :class:`GuardedConnection`.
    (cheroot shakes hands in its accept loop: one silent client there stopped every
    other HTTPS client from connecting for the idle timeout.)"""

    served = False

    def __init__(self, server: Any, sock: socket.socket, addr: Any, address: str) -> None:
        self.server = server
        self.socket = sock
        self.addr = addr
        self.address: str | None = address  # counted for it until handed on
        self.accepted = time.monotonic()
        self.last_used = time.time()
        self.connection: HTTPConnection | None = None  # the server's ConnectionClass

    @property
    def rfile(self) -> Any:
        """What a stopping thread pool looks at (see gateway.server.StoppableThreadPool)."""
        return self.connection.rfile if self.connection is not None else _NotReading

    def communicate(self) -> bool:
        """Shake hands, then serve requests as cheroot would; False: nothing is left for
        the worker thread to keep (the connection went back to the selector, or closed)."""
        self.socket.settimeout(self.server.limits.header_timeout)
        try:
            tls_socket, tls_environ = self.server.ssl_adapter.wrap(self.socket)
        except (cheroot_errors.FatalSSLAlert, cheroot_errors.NoSSLError, OSError):
            return False  # dropped, timed out, or plain HTTP (answered by a TLS alert)
        tls_socket.settimeout(self.server.timeout)
        makefile = self.server.ssl_adapter.makefile
        conn = self.server.ConnectionClass(self.server, tls_socket, makefile)
        conn.remote_addr, conn.remote_port = self.addr[0], self.addr[1]
        conn.ssl_env = tls_environ
        conn.address, self.address = self.address, None
        self.connection = conn
        if conn.communicate():
            self.server.put_conn(conn)
        else:
            conn.close()
        return False

    def close(self) -> None:
        """Close the socket unless a connection took it over; its address's count goes
        down (once)."""
        if self.connection is not None:
            return
        address, self.address = self.address, None
        if address is not None:
            self.server.counters.release(address)
        with contextlib.suppress(OSError):
            self.socket.close()
