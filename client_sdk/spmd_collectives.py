"""The communicator of an SPMD job: point-to-point messages and collectives between its
ranks, over connections that :func:`client_sdk.spmd_comm.connect` opened and authenticated
(import :class:`Communicator` and :class:`RankFailed` from :mod:`client_sdk.spmd_comm`).

Messages travel as frames (:mod:`client_sdk.spmd_frames`: any picklable object, numpy
arrays without copies). One reader thread per connection puts the messages in a queue
per (source, tag), in the order they were sent.

Collectives go over the same messages with negative tags, a new one for each call (users'
tags are >= 0), so consecutive collectives never mix; like MPI, every rank must call the
same collectives in the same order. ``bcast`` follows a binomial tree; ``scatter`` and
``gather`` go root-to-all and all-to-root (fine up to ~64 ranks); ``reduce`` gathers then
folds in rank order, ``((x0 op x1) op x2) ...``, so a non-commutative ``op`` is
deterministic; ``allgather``, ``allreduce`` and ``barrier`` add a bcast.
"""

from __future__ import annotations

import functools
import itertools
import operator
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from client_sdk.spmd_frames import (
    ABORT,
    CLOSE,
    DATA,
    HEADER,
    Channel,
    dumps,
    frame,
    loads,
    read_buffer,
    read_bytes,
)

CLOSE_WAIT = 5.0  # seconds close() waits for the peers' CLOSE
POLL = 0.1  # seconds a waiting receiver waits at a time before it looks for failures again
PARK = 0.05  # seconds a reader thread sleeps at a time while a receiver reads its connection


class RankFailed(RuntimeError):
    """Another rank of the job failed or went away: this rank stops. ``.rank`` names it,
    ``.error`` is its exception when it sent one, ``.reason`` the text after the rank."""

    def __init__(
        self,
        message: str,
        rank: int | None = None,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.rank = rank
        self.error = error
        self.reason = message if reason is None else reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (RankFailed, (str(self), self.rank, self.error, self.reason))


def _user_tag(tag: int) -> int:
    if not isinstance(tag, int) or tag < 0:
        raise ValueError(f"tags are integers >= 0 (negative ones are for collectives): {tag!r}")
    return tag


def _copy(failure: RankFailed) -> RankFailed:
    """A new exception to raise (each raise of one instance adds to its traceback)."""
    return RankFailed(str(failure), failure.rank, failure.error, failure.reason)


class Link:
    """The connection to one peer: its channel, its send lock and its reader's state."""

    def __init__(self, peer: int, channel: Channel) -> None:
        self.peer = peer
        self.channel = channel
        self.lock = threading.Lock()  # one frame at a time
        self.peer_closed = False  # its CLOSE arrived
        self.done = False  # no more frames: CLOSE then EOF, ABORT, or lost
        self.reading = threading.Lock()  # held by the thread reading a frame from it
        self.receivers = 0  # receivers reading it themselves (its reader thread then sleeps)
        self.reader: threading.Thread | None = None


class Communicator:
    """Rank ``rank`` of ``size``: messages and collectives. Made by
    :func:`client_sdk.spmd_comm.connect`; ``Communicator(0, 1)`` is a job of one rank."""

    def __init__(self, rank: int, size: int, links: dict[int, Link] | None = None) -> None:
        self.rank = rank
        self.size = size
        self._links = dict(links or {})
        self._changed = threading.Condition()
        self._queues: dict[tuple[int, int], deque[tuple[int, Any, list[Any]]]] = {}
        self._failure: RankFailed | None = None
        self._closing = False  # close() or abort() began: connections end without failure
        self._closed = False
        self._calls = itertools.count()  # collectives called, for their tags
        for link in self._links.values():
            name = f"spmd-{rank}-from-{link.peer}"
            link.reader = threading.Thread(target=self._read, args=(link,), name=name, daemon=True)
            link.reader.start()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        self.close() if error is None else self.abort(error)

    def failure(self) -> RankFailed | None:
        """The failure seen (another rank's, or this one's once aborted), if any."""
        return self._failure

    def send(self, obj: Any, dest: int, tag: int = 0) -> None:
        """Send ``obj`` to rank ``dest`` (itself too) with ``tag`` (>= 0); thread-safe."""
        self._send(obj, dest, _user_tag(tag))

    def recv(self, source: int, tag: int = 0, timeout: float | None = None) -> Any:
        """The next object from rank ``source`` with ``tag``: waits for it, at most
        ``timeout`` seconds (TimeoutError) when given; RankFailed once a rank failed."""
        return self._recv(source, _user_tag(tag), timeout)

    def abort(self, error: BaseException | None = None) -> None:
        """Tell every peer that this rank failed (with ``error``; a :class:`RankFailed`
        passes on the rank it names), then close every connection at once."""
        with self._changed:
            if self._closed:
                return
            seen = self._failure if error is None else error
            if isinstance(seen, RankFailed) and seen.rank is not None:
                failure = self._fail(seen.rank, seen.reason, seen.error)
            else:
                text = "aborted" if error is None else f"{type(error).__name__}: {error}"
                failure = self._fail(self.rank, text[:1000], error)
            self._closing = self._closed = True
            self._changed.notify_all()
        try:  # the error in a pickle of its own: its reason arrives even if it does not load
            error = dumps(failure.error, inband=True)[:2]
        except Exception:  # an exception that does not pickle: its text then
            error = dumps(RuntimeError(failure.reason), inband=True)[:2]
        self._send_all(frame(ABORT, failure.rank or 0, (failure.reason, *error)), 1.0)
        self._shutdown()

    def close(self) -> None:
        """Send CLOSE to every peer, wait (5 s at most) for theirs, and close; once a
        failure was seen, pass it on as :meth:`abort` does instead."""
        if self._failure is not None:
            return self.abort()
        with self._changed:
            if self._closing:
                return
            self._closing = True
        self._send_all(frame(CLOSE, 0), CLOSE_WAIT)
        with self._changed:
            links = self._links.values()
            self._changed.wait_for(lambda: all(x.peer_closed or x.done for x in links), CLOSE_WAIT)
            self._closed = True
            self._changed.notify_all()
        self._shutdown()

    def _send_all(self, parts: list[Any], wait: float) -> None:
        """Send a frame to every peer still there, giving up on one busy past ``wait``."""
        for link in self._links.values():
            if not link.done and link.lock.acquire(timeout=wait):
                try:
                    link.channel.send(parts)
                except OSError:
                    pass
                finally:
                    link.lock.release()

    def _shutdown(self) -> None:
        for link in self._links.values():
            link.channel.shutdown()
        for link in self._links.values():
            if link.reader is not None and link.reader is not threading.current_thread():
                link.reader.join(2.0)
            link.channel.close()

    def _fail(self, rank: int, reason: str, error: BaseException | None = None) -> RankFailed:
        """Record that ``rank`` failed, unless a failure is known already, and wake every
        waiter; return the failure recorded."""
        with self._changed:
            if self._failure is None:
                message = f"rank {rank} failed: {reason}"
                self._failure = RankFailed(message, rank, error, reason)
                self._changed.notify_all()
            return self._failure

    def _check(self, rank: int) -> Link | None:
        """The link to ``rank`` (None: this rank), once it is known that it may be used."""
        if not isinstance(rank, int) or not 0 <= rank < self.size:
            raise ValueError(f"ranks are 0..{self.size - 1}, not {rank!r}")
        if self._failure is not None:
            raise _copy(self._failure)
        if self._closed or (self._closing and rank != self.rank):
            raise RuntimeError(f"the communicator of rank {self.rank} is closed")
        return self._links.get(rank)

    def _gone(self, rank: int) -> RankFailed:
        reason = f"it closed its communicator while rank {self.rank} expected more of it"
        return RankFailed(f"rank {rank} failed: {reason}", rank, None, reason)

    def _send(self, obj: Any, dest: int, tag: int) -> None:
        with self._changed:
            link = self._check(dest)
            if link is not None and link.peer_closed:
                raise self._gone(dest)
        if link is None:  # to itself: a copy, as a peer would get
            serializer, data, buffers = dumps(obj)
            self._deliver(dest, tag, (serializer, data, [bytearray(b) for b in buffers]))
            return
        parts = frame(DATA, tag, obj)
        with link.lock:
            try:
                link.channel.send(parts)
                return
            except OSError as exc:
                lost = exc
        with self._changed:  # its CLOSE may be on its way: then it did not fail
            self._changed.wait_for(lambda: link.done, 1.0)
            if link.peer_closed:
                raise self._gone(dest) from lost
        raise _copy(self._fail(dest, f"its connection was lost ({lost!r})")) from lost

    def _recv(self, source: int, tag: int, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                link = self._check(source)
                queue = self._queues.get((source, tag))
                if queue:
                    serializer, data, buffers = queue.popleft()
                    if not queue:
                        del self._queues[(source, tag)]
                    break
                if link is not None and (link.peer_closed or link.done):
                    raise self._gone(source)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"no message from rank {source} (tag {tag}) in {timeout} s")
                wait = POLL if left is None else min(left, POLL)
                if link is not None and link.reading.acquire(blocking=False):
                    # Read the connection here rather than be woken by its reader thread:
                    # a message then costs one thread wake-up, not two.
                    link.receivers += 1
                    self._changed.release()
                    try:
                        self._read_waiting(link, wait)
                    finally:
                        self._changed.acquire()
                        link.receivers -= 1
                else:
                    self._changed.wait(wait)
        return loads(serializer, data, buffers)

    def _deliver(self, source: int, tag: int, message: tuple[int, Any, list[Any]]) -> None:
        with self._changed:
            self._queues.setdefault((source, tag), deque()).append(message)
            self._changed.notify_all()

    def _read(self, link: Link) -> None:
        """The reader thread of ``link``: frames into queues while no receiver reads them
        itself (a failing peer's ABORT is seen while this rank computes), until CLOSE and
        EOF, ABORT or loss."""
        try:
            while not link.done:
                if link.receivers:  # a receiver reads it: not woken by each of its messages
                    time.sleep(PARK)
                    continue
                if not link.channel.readable(PARK):
                    continue
                with link.reading:
                    if not link.done and link.channel.readable(0):
                        self._read_frame(link)
        except Exception as exc:
            self._lost(link, exc)

    def _read_waiting(self, link: Link, wait: float) -> None:
        """(a receiver holding ``link.reading``) Read one frame of ``link`` if one comes
        within ``wait`` seconds; release the lock."""
        try:
            if not link.done and link.channel.readable(wait):
                self._read_frame(link)
        except Exception as exc:
            self._lost(link, exc)
        finally:
            link.reading.release()

    def _read_frame(self, link: Link) -> None:
        """Read one frame of ``link`` (``link.reading`` held) and act on it."""
        channel = link.channel
        kind, serializer, tag, count, length = HEADER.unpack(read_bytes(channel, HEADER.size))
        sizes = struct.unpack(f"!{count}Q", read_bytes(channel, 8 * count))
        data = read_bytes(channel, length)
        buffers = [read_buffer(channel, size) for size in sizes]
        if kind == DATA:
            self._deliver(link.peer, tag, (serializer, data, buffers))
        elif kind == CLOSE:
            with self._changed:
                link.peer_closed = True
                self._changed.notify_all()
        elif kind == ABORT:
            reason, serializer, blob = loads(serializer, data, buffers)
            try:
                error = loads(serializer, blob, [])
            except Exception:  # its class, say, is not importable here
                error = RuntimeError(reason)
            self._fail(tag, str(reason), error)
            self._end(link)
        else:
            raise ValueError(f"a frame of unknown kind {kind}")

    def _lost(self, link: Link, exc: BaseException) -> None:
        """``link`` broke (or ended after its CLOSE, or while closing: no failure then)."""
        if not (link.peer_closed or self._closing):
            self._fail(link.peer, f"its connection was lost ({exc!r})")
        self._end(link)

    def _end(self, link: Link) -> None:
        with self._changed:
            link.done = True
            self._changed.notify_all()

    def _tag(self, root: int) -> int:
        """The tag of the next collective call, once ``root`` is checked."""
        if not isinstance(root, int) or not 0 <= root < self.size:
            raise ValueError(f"root must be a rank in 0..{self.size - 1}, not {root!r}")
        return -1 - next(self._calls)

    def bcast(self, obj: Any = None, root: int = 0) -> Any:
        """``obj`` of ``root``, on every rank (the root gets its own object back)."""
        tag = self._tag(root)
        relative = (self.rank - root) % self.size
        mask = 1
        while mask < self.size:  # from the parent in the binomial tree (not at the root)
            if relative & mask:
                obj = self._recv((relative - mask + root) % self.size, tag)
                break
            mask <<= 1
        mask >>= 1
        while mask > 0:  # then on to the children
            if relative + mask < self.size:
                self._send(obj, (relative + mask + root) % self.size, tag)
            mask >>= 1
        return obj

    def scatter(self, items: Sequence[Any] | None = None, root: int = 0) -> Any:
        """``items[rank]`` of ``root``'s ``items`` (``size`` of them), on each rank."""
        tag = self._tag(root)
        if self.rank != root:
            return self._recv(root, tag)
        if items is None or len(items) != self.size:
            count = "None" if items is None else len(items)
            raise ValueError(f"scatter needs {self.size} items at the root, got {count}")
        for dest in range(self.size):
            if dest != root:
                self._send(items[dest], dest, tag)
        return items[root]

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's ``obj`` in rank order at ``root``; None on the other ranks."""
        tag = self._tag(root)
        if self.rank != root:
            self._send(obj, root, tag)
            return None
        return [obj if source == root else self._recv(source, tag) for source in range(self.size)]

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order, on every rank."""
        return self.bcast(self.gather(obj, root=0), root=0)

    def reduce(
        self, obj: Any, op: Callable[[Any, Any], Any] = operator.add, root: int = 0
    ) -> Any | None:
        """``((obj0 op obj1) op obj2) ...`` at ``root`` (in rank order); None elsewhere."""
        values = self.gather(obj, root=root)
        return None if values is None else functools.reduce(op, values)

    def allreduce(self, obj: Any, op: Callable[[Any, Any], Any] = operator.add) -> Any:
        """``((obj0 op obj1) op obj2) ...`` (in rank order), on every rank."""
        return self.bcast(self.reduce(obj, op, root=0), root=0)

    def barrier(self) -> None:
        """Return once every rank has called ``barrier``."""
        self.allreduce(None, lambda left, right: None)
