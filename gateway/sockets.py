"""A connection's socket as the gateway reads it: a request's bytes gathered in the
selector loop until its headers are complete, then read by a worker thread by a deadline.

A client that trickles its headers (a "slowloris") costs a socket and a few bytes here,
not a thread: the thread only takes a request whose line and headers have all arrived.
"""

from __future__ import annotations

import socket
import time
from typing import Any

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; more is answered 431 (414 for the URL)
HEADERS_END = (b"\r\n\r\n", b"\n\n")  # bare LF: cheroot answers it 400, at once


class DeadlineSocket:
    """A socket whose reads end by ``deadline`` (a ``time.monotonic()`` value) when one is
    set, however the bytes trickle: a read past it raises ``socket.timeout``, which
    cheroot answers 408. Without a deadline, reads time out as the socket does.

    ``gather()`` reads ahead without waiting (from the selector loop); reads serve the
    gathered bytes first. Every other attribute is the socket's."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()  # the per-read idle timeout
        self._current = self._timeout
        self.deadline: float | None = None
        self.gathered = bytearray()  # read ahead, not yet read by the request
        self.first_byte: float | None = None  # when the waiting request's first byte came

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def gather(self) -> bool | None:
        """Read what has arrived, without waiting. True: the request's line and headers
        are all here (or more than :data:`MAX_HEADER_BYTES`, for cheroot to refuse), so
        a thread can take it; False: not yet; None: the client closed the connection."""
        self._set_timeout(0.0)
        try:
            data = self._sock.recv(MAX_HEADER_BYTES)
        except (BlockingIOError, InterruptedError):
            return self.headers_arrived()
        except OSError:
            return None
        if not data:
            return None
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        self.gathered += data
        return self.headers_arrived()

    def headers_arrived(self) -> bool:
        """Whether the gathered bytes hold a whole request line and headers."""
        gathered = self.gathered
        return len(gathered) >= MAX_HEADER_BYTES or any(end in gathered for end in HEADERS_END)

    def start_request(self, header_timeout: float) -> None:
        """A thread takes the next request: its line, headers and small body must all
        be read within ``header_timeout`` of its first byte."""
        self.deadline = (self.first_byte or time.monotonic()) + header_timeout
        self.first_byte = None
        self._set_timeout(self._timeout)  # writes may come before any read arms it

    def end_request(self) -> None:
        """The thread is done with the request: reads wait as the socket does again; bytes
        read ahead (a pipelined request) count from now."""
        self.deadline = None
        if self.gathered:
            self.first_byte = time.monotonic()

    def _set_timeout(self, timeout: float | None) -> None:
        if timeout != self._current:
            self._sock.settimeout(timeout)
            self._current = timeout

    def _arm(self) -> None:
        if self.deadline is None:
            timeout = self._timeout
        else:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError("timed out")
        self._set_timeout(timeout)

    def _take(self, nbytes: int) -> bytes:
        taken = bytes(self.gathered[:nbytes])
        del self.gathered[:nbytes]
        return taken

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into``, by the deadline; gathered bytes first."""
        if self.gathered:
            view = memoryview(buffer).cast("B")
            taken = self._take(min(nbytes or len(view), len(view)))
            view[: len(taken)] = taken
            return len(taken)
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``socket.recv``, by the deadline; gathered bytes first."""
        if self.gathered:
            return self._take(bufsize)
        self._arm()
        return self._sock.recv(bufsize, flags)
