"""How the gateway's HTTP server takes connections, so slow and idle clients can't hold it.

cheroot hands each new connection to a worker thread at once, and the thread waits for
the request with a per-read timeout: a client that connects and sends nothing, or that
trickles a header line every few seconds, holds a thread for as long as it likes (2,048
such connections stopped the gateway answering anyone). Three guards, nginx's
``client_header_timeout`` and ``limit_conn`` in cheroot's terms:

- **Idle costs a socket, not a thread.** A new connection waits in the server's selector,
  as an idle keep-alive connection does, until its first bytes arrive. One that sends
  nothing within ``header_timeout`` seconds is closed.
- **Headers on time.** From a request's first byte, its line and headers, and a body of
  up to :data:`SMALL_BODY` bytes, must arrive within ``header_timeout`` seconds however
  they trickle; else it is answered 408 and closed. A larger body only has to keep
  moving (each read within the idle timeout), so a slow but steady upload goes through.
- **A share per address.** At most ``max_per_address`` connections per client address;
  one more is answered 503 with ``Retry-After`` at once and closed, so one address
  can't take every thread.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot.connections import ConnectionManager
from cheroot.makefile import MakeFile
from cheroot.server import HTTPConnection, HTTPRequest

from gateway.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    SMALL_BODY,
    GatewayConfig,
)
from gateway.handshake import PendingHandshake
from gateway.parking import Parked, Parking, ParkingLot
from gateway.sockets import MAX_HEADER_BYTES, DeadlineSocket

RETRY_AFTER = 1  # seconds a refused client is told to wait

log = logging.getLogger("computethis")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a request may take to arrive, and how many connections one address holds."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS

    @classmethod
    def of(cls, config: GatewayConfig) -> ConnectionLimits:
        """The limits a gateway's settings ask for."""
        return cls(config.header_timeout, config.max_connections_per_address)


def json_error(
    protocol: str, code: int, message: str, close: bool, extra: tuple[str, ...] = ()
) -> bytes:
    """A whole HTTP response with the API's JSON error body (and ``Connection: close``
    when the connection closes after it)."""
    reason = HTTPStatus(code).phrase
    error = reason.lower().replace(" ", "_").replace("-", "_")
    body = json.dumps({"error": error, "message": message or reason}).encode()
    head = [
        f"{protocol} {code} {reason}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
        *extra,
        *(["Connection: close"] if close else []),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def headers_too_late(header_timeout: float) -> str:
    """The 408's message."""
    return (
        f"the request's headers did not all arrive within {header_timeout:g} s; "
        "send each request at once"
    )


class JsonErrorRequest(HTTPRequest):
    """A cheroot request whose own errors (bad request line, headers too large or too
    slow, a plain HTTP request on the HTTPS port...) use the API's JSON shape
    ``{"error", "message"}`` instead of plain text. What the app answers is unchanged."""

    conn: GuardedConnection
    server: Any  # the GatewayServer: its ``limits`` and ``counters``

    def simple_response(self, status: str | int, msg: str = "") -> None:
        """Answer ``status`` (cheroot's own errors) as JSON."""
        code = int(str(status)[:3])
        if code == 413 and not self.sent_headers and "headers" in msg:
            code = 431  # cheroot says 413 for oversized headers; 431 is the precise code
            msg = f"the request line and headers exceed {MAX_HEADER_BYTES} bytes; send less"
        elif code == 414:
            msg = f"the request line exceeds {MAX_HEADER_BYTES} bytes; shorten the URL"
        elif code == 408:
            msg = headers_too_late(self.server.limits.header_timeout)
            with self.server.counters.lock:
                self.server.counters.timed_out += 1
        if code in (408, 413, 414, 431):
            self.close_connection = True  # the rest of the request is still unread
        try:
            self.conn.wfile.write(
                json_error(self.server.protocol, code, msg, self.close_connection)
            )
        except OSError as exc:
            if exc.args and exc.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise

    def send_headers(self) -> None:
        """Send the app's status and headers; an answer that says ``Connection: close``
        (the app's 408 for a body that stopped coming) closes the connection instead of
        reading the rest of the body first, as cheroot would."""
        if any(
            key.lower() == b"connection" and value.lower() == b"close"
            for key, value in self.outheaders
        ):
            self.close_connection = True
        super().send_headers()

    def respond(self) -> None:
        """Run the app. A large or chunked body need not arrive by the headers' deadline:
        it only has to keep moving."""
        length = self.inheaders.get(b"Content-Length", b"0")
        if self.chunked_read or not length.isdigit() or int(length) > SMALL_BODY:
            self.conn.socket.deadline = None
        try:
            super().respond()
        except Parked as parked:  # the answer waits in the parking lot (gateway.parking)
            self.conn.parking = Parking(self, parked)


class ConnectionCounters:
    """Counts for ``/metrics``, kept by the connections themselves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_address: collections.Counter[str] = collections.Counter()
        self.refused = 0  # connections refused at accept: their address had too many
        self.timed_out = 0  # requests answered 408 (or new connections closed silent)
        self.parked: Callable[[], int] = lambda: 0  # answers waiting without a thread

    def admit(self, address: str, limit: int) -> bool:
        """Count a new connection of ``address`` unless it has ``limit`` open already
        (then count it refused); whether it was admitted."""
        with self.lock:
            if self.by_address[address] >= limit:
                self.refused += 1
                return False
            self.by_address[address] += 1
            return True

    def release(self, address: str) -> None:
        """One connection of ``address`` closed."""
        with self.lock:
            self.by_address[address] -= 1
            if not self.by_address[address]:
                del self.by_address[address]

    def open_connections(self) -> int:
        """Connections open now."""
        with self.lock:
            return sum(self.by_address.values())

    def busiest_address(self) -> int:
        """Open connections of the address that has the most."""
        with self.lock:
            return max(self.by_address.values(), default=0)

    def addresses(self) -> int:
        """Client addresses with a connection open now."""
        with self.lock:
            return len(self.by_address)


class GuardedConnection(HTTPConnection):
    """A cheroot connection whose every request has the server's
    ``limits.header_timeout`` to arrive, and which takes its address's count back when
    it closes. Its server has ``limits`` and ``counters`` (see :class:`GuardedConnections`)."""

    RequestHandlerClass = JsonErrorRequest
    socket: DeadlineSocket
    address: str | None = None  # set once admitted: its address counts it
    parking: Parking | None = None  # its answer waits (gateway.parking)

    def __init__(self, server: Any, sock: socket.socket, makefile: Any = MakeFile) -> None:
        super().__init__(server, DeadlineSocket(sock), makefile)
        self.accepted = time.monotonic()
        self.served = False  # a request started on it

    def communicate(self) -> bool:
        """Read and answer one request, its headers by the deadline; or go on with an
        answer that waited. True: keep the connection (parked, or for the next request)."""
        if self.parking is not None:
            parking, self.parking = self.parking, None
            outcome = parking.resume()
            if isinstance(outcome, Parking):
                self.parking = outcome
                return True
            return outcome
        self.served = True
        self.socket.start_request(self.server.limits.header_timeout)
        try:
            return super().communicate() or self.parking is not None
        finally:
            self.socket.end_request()

    def close(self) -> None:
        """Close the socket; its address's count goes down (once)."""
        address, self.address = self.address, None
        if address is not None:
            self.server.counters.release(address)
        super().close()


class _Accepted:
    """Stands in for the listening socket: its ``accept()`` hands out the one connection
    already accepted (so cheroot's accept steps run on it)."""

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self._accepted = sock, addr

    def accept(self) -> tuple[socket.socket, Any]:
        return self._accepted


class GuardedConnections(ConnectionManager):
    """cheroot's connection manager, with new connections waiting in the selector and a
    cap per client address (see the module). Its server has ``limits``
    (:class:`ConnectionLimits`) and ``counters`` (:class:`ConnectionCounters`)."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.lot = ParkingLot(self._wake)
        self.counters.parked = self.lot.__len__

    def _wake(self, conn: GuardedConnection) -> None:
        """A parked answer's wait is over: queue it for a thread (close it if stopping)."""
        if self.server.ready:
            self.server.process_conn(conn)
        else:
            conn.close()

    def put(self, conn: Any) -> None:
        """Keep ``conn`` for its next request, or park it while its answer waits."""
        if getattr(conn, "parking", None) is not None:
            self.lot.park(conn)
        elif getattr(conn.socket, "gathered", None):  # a pipelined request, read ahead
            self.server.process_conn(conn)
        else:
            super().put(conn)

    def still_gathering(self, conn: Any) -> bool:
        """Read what ``conn``'s client sent, without waiting; True if its request's
        headers are not all here yet (it waits in the selector again, or it closed).
        False: a thread may take it. TLS connections are read by their thread."""
        if (
            self.server.ssl_adapter is not None
            or not isinstance(conn, GuardedConnection)
            or conn.parking is not None
            or conn.rfile.has_data()
        ):
            return False
        arrived = conn.socket.gather()
        if arrived:
            return False
        if arrived is None:  # the client went away
            conn.close()
        else:
            super().put(conn)
        return True

    def close(self) -> None:
        """Close every connection, parked ones too."""
        self.lot.close()
        super().close()

    @property
    def limits(self) -> ConnectionLimits:
        return self.server.limits

    @property
    def counters(self) -> ConnectionCounters:
        return self.server.counters

    def _from_server_socket(self, server_socket: Any) -> None:
        """Accept a connection; refuse it at once if its address has too many, else let
        it wait in the selector for its first bytes. Never hands it to a thread."""
        try:
            sock, addr = server_socket.accept()
        except OSError as exc:  # nothing to accept after all, or no descriptor left
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                log.warning("cannot accept a connection: %s", exc)
                time.sleep(0.1)  # the backlog stays readable: don't spin on it
            return None
        address = str(addr[0]) if isinstance(addr, tuple) and addr else "local"
        if not self.counters.admit(address, self.limits.max_per_address):
            self._refuse(sock)
            return None
        if self.server.ssl_adapter is not None:  # shake hands in a thread, not here
            pending = PendingHandshake(self.server, sock, addr, address)
            self._selector.register(sock.fileno(), selectors.EVENT_READ, data=pending)
            return None
        conn = None
        try:  # cheroot's own accept steps (timeouts, TLS), on the socket we took
            conn = super()._from_server_socket(_Accepted(sock, addr))
        finally:
            if conn is None:
                self.counters.release(address)
        conn.address = address
        self.put(conn)
        return None

    def _refuse(self, sock: socket.socket) -> None:
        """503 and close, from this (the accept loop's) thread: never wait on the client."""
        message = (
            f"{self.limits.max_per_address} connections from your address are open; "
            "close some (or reuse them) and retry"
        )
        retry = (f"Retry-After: {RETRY_AFTER}",)
        self._answer_and_close(sock, json_error(self.server.protocol, 503, message, True, retry))
        sock.close()

    @staticmethod
    def _answer_and_close(sock: Any, response: bytes) -> None:
        """Send ``response`` if the socket takes it at once, and end the sending side."""
        try:
            sock.setblocking(False)
            sock.send(response)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _expire(self, threshold: float) -> None:
        """Close idle keep-alive connections (cheroot's idle timeout), new ones that sent
        nothing within the header timeout, and answer 408 to those whose request's
        headers did not all arrive within it."""
        super()._expire(threshold)
        since = time.monotonic() - self.limits.header_timeout
        late = []
        for fd, conn in self._selector.connections:
            if conn is self.server:
                continue
            first_byte = getattr(conn.socket, "first_byte", None)
            if first_byte is not None and first_byte < since:
                late.append((fd, conn, True))
            elif first_byte is None and not conn.served and conn.accepted < since:
                late.append((fd, conn, False))
        for fd, conn, started in late:
            self._selector.unregister(fd)
            with self.counters.lock:
                self.counters.timed_out += 1
            if started:
                message = headers_too_late(self.limits.header_timeout)
                self._answer_and_close(
                    conn.socket, json_error(self.server.protocol, 408, message, True)
                )
            conn.close()
