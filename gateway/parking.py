"""Answers that wait without a thread: the gateway's server side of :mod:`gateway.waiting`.

A long-poll or an outcome stream used to hold one of the HTTP server's threads for as
long as it waited (up to ``max_wait``, 300 s): ~190 KiB of memory each, and 5,000 of them
took 5,000 threads. Here a waiting answer costs its socket and its suspended generator:

1. :class:`ParkingGateway` runs the app (the environ says :data:`~gateway.waiting.PARKING`)
   and sends what it can. At a :class:`~gateway.waiting.Wait` that is not over, it raises
   :class:`Parked`; the connection keeps a :class:`Parking` (what to run next).
2. The thread returns the connection to the server as if the request were done;
   ``GuardedConnections.put`` hands a parked connection to the :class:`ParkingLot`
   instead of its selector.
3. The lot wakes it when its mailbox gets mail (on the thread that records the outcome)
   or its deadline passes (the lot's one timer thread): the server queues it for a
   thread like a new request, and :meth:`Parking.resume` goes on from where it stopped.

A stopping gateway closes every mailbox first, so every parked answer is sent at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot.wsgi import Gateway_10

from gateway.waiting import PARKING, Wait

log = logging.getLogger("computethis")


class Parked(Exception):  # noqa: N818 - a signal, not an error
    """The answer waits for ``wait``; ``proceed`` goes on once it is over."""

    def __init__(self, wait: Wait, proceed: Callable[[], None]) -> None:
        super().__init__("parked")
        self.wait = wait
        self.proceed = proceed


class ParkingGateway(Gateway_10):
    """cheroot's WSGI gateway, which parks at the Waits of an answer's body (a stream's,
    or a :class:`~gateway.waiting.Later` answer's) instead of blocking its thread."""

    body: Iterator[Any]
    response: Any = None

    def respond(self) -> None:
        """Run the app and send its answer, or raise :class:`Parked` at a Wait."""
        self.env[PARKING] = True
        self.response = self.req.server.wsgi_app(self.env, self.start_response)
        self.body = iter(self.response)
        self._send()

    def _send(self) -> None:
        try:
            for chunk in self.body:
                if isinstance(chunk, Wait):
                    if not chunk.over():
                        raise Parked(chunk, self._send)
                elif chunk:
                    if not isinstance(chunk, bytes):
                        raise ValueError("WSGI Applications must yield bytes")
                    self.write(chunk)
        except Parked:
            raise
        except BaseException:
            self._close_response()
            raise
        self.req.ensure_headers_sent()
        self._close_response()

    def _close_response(self) -> None:
        close = getattr(self.response, "close", None)
        if close is not None:
            close()


class Parking:
    """A connection's answer that waits: ``wait``, then ``proceed`` on the request ``req``."""

    def __init__(self, req: Any, parked: Parked) -> None:
        self.req = req
        self.wait = parked.wait
        self.proceed = parked.proceed
        self.claimed = False  # woken (by mail or by the deadline): queued for a thread

    def resume(self) -> Parking | bool:
        """Go on with the answer on this thread: a new :class:`Parking` when it waits
        again, else whether to keep the connection open (as cheroot's ``communicate``)."""
        req = self.req
        try:
            self.proceed()
        except Parked as again:
            return Parking(req, again)
        except OSError as exc:
            if exc.args and exc.args[0] not in cheroot_errors.socket_errors_to_ignore:
                log.info("a waiting answer's client went away: %s", exc)
            return False
        except Exception:
            log.exception("error while answering a request after its wait")
            if not req.sent_headers:
                req.simple_response("500 Internal Server Error")
            return False
        try:
            if req.chunked_write:  # what cheroot writes after an answer of unknown length
                req.conn.wfile.write(b"0\r\n\r\n")
        except OSError:
            return False
        return not req.close_connection


class ParkingLot:
    """The connections whose answers wait: ``wake(conn)`` (the server queues it for a
    thread) once its wait is over. One timer thread handles the deadlines."""

    def __init__(self, wake: Callable[[Any], None]) -> None:
        self._wake = wake
        self._condition = threading.Condition()
        self._deadlines: list[tuple[float, int, Any]] = []  # (deadline, seq, conn)
        self._order = itertools.count()
        self._parked: set[Any] = set()
        self._closed = False
        self._timer = threading.Thread(target=self._run, name="computethis-parking", daemon=True)
        self._timer.start()

    def __len__(self) -> int:
        with self._condition:
            return len(self._parked)

    def park(self, conn: Any) -> None:
        """Hold ``conn`` (its ``parking`` set) until its wait is over."""
        parking: Parking = conn.parking
        with self._condition:
            if self._closed:
                parking.claimed = True
            else:
                self._parked.add(conn)
                heapq.heappush(self._deadlines, (parking.wait.deadline, next(self._order), conn))
                if len(self._deadlines) > 2 * len(self._parked) + 64:  # woken ones pile up
                    self._deadlines = [e for e in self._deadlines if e[2] in self._parked]
                    heapq.heapify(self._deadlines)
                self._condition.notify()
        if parking.claimed:  # the gateway is stopping: answer now
            self._wake(conn)
            return
        parking.wait.mailbox.on_mail(lambda: self._release(conn, parking))

    def _release(self, conn: Any, parking: Parking) -> None:
        with self._condition:
            if parking.claimed or conn.parking is not parking:
                return
            parking.claimed = True
            self._parked.discard(conn)
        self._wake(conn)

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                due = []
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, conn = heapq.heappop(self._deadlines)
                    if conn in self._parked:
                        due.append((conn, conn.parking))
                if due:
                    self._condition.release()
                    try:
                        for conn, parking in due:
                            self._release(conn, parking)
                    finally:
                        self._condition.acquire()
                    continue
                timeout = self._deadlines[0][0] - now if self._deadlines else None
                self._condition.wait(timeout)

    def close(self) -> None:
        """Stop the timer; answer every connection still parked now."""
        with self._condition:
            self._closed = True
            left = [(conn, conn.parking) for conn in self._parked]
            self._condition.notify()
        for conn, parking in left:
            self._release(conn, parking)
        self._timer.join(timeout=5)
