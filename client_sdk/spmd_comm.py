"""How the ranks of an SPMD job (N ranks of one job on N Dask workers) connect, and the
names to import: :func:`connect` returns the rank's :class:`Communicator` (messages and
collectives with mpi4py's lower-case names, in :mod:`client_sdk.spmd_collectives`), which
raises :class:`RankFailed` once another rank failed.

:func:`connect` builds a full mesh of TCP connections (``TCP_NODELAY``; TLS with the
contexts given), one per pair of ranks: each rank listens on a free port and publishes its
address through a :class:`Rendezvous`; rank ``j`` connects to every rank ``i < j``, which
accepts. Each connection is authenticated with the job's secret, challenge-response: the
accepting rank sends a nonce, the connecting one answers with the job id, its rank and
``HMAC-SHA256(secret, f"{job_id}:{rank}:{nonce}")`` with its own nonce, which the accepting
rank answers in turn. A connection that fails (another job, a wrong secret, a rank out of
range or already connected) is closed without disturbing the others.

A rank that fails calls :meth:`Communicator.abort`: each peer records a :class:`RankFailed`
naming it (with its exception, or the exception's text when it does not travel) and every
blocked or later ``recv`` or collective there raises it; so does a connection lost before
the peer's clean CLOSE (``close()`` sends CLOSE, then waits 5 s at most for the peers').

The connections themselves, plain or TLS, are in :mod:`client_sdk.spmd_channels`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
import time
from typing import Protocol

from client_sdk.spmd_channels import open_channel
from client_sdk.spmd_collectives import Communicator, Link, RankFailed
from client_sdk.spmd_frames import Channel, read_bytes

__all__ = [
    "Communicator",
    "KnownAddresses",
    "LocalRendezvous",
    "RankFailed",
    "Rendezvous",
    "connect",
]

_MAGIC = b"CTSPMD01"  # what the accepting rank sends first, then its nonce
_NONCE = 32
_HANDSHAKE_TIMEOUT = 30.0  # seconds to authenticate one connection


class Rendezvous(Protocol):
    """Where the ranks of one job tell one another their listening addresses."""

    def publish(self, rank: int, address: tuple[str, int]) -> None: ...

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]: ...  # else TimeoutError


class LocalRendezvous:
    """A :class:`Rendezvous` in memory, for ranks that are threads of one process."""

    def __init__(self) -> None:
        self._addresses: dict[int, tuple[str, int]] = {}
        self._changed = threading.Condition()

    def publish(self, rank: int, address: tuple[str, int]) -> None:
        """Tell the other ranks where ``rank`` listens."""
        with self._changed:
            self._addresses[rank] = (str(address[0]), int(address[1]))
            self._changed.notify_all()

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
        """Where ``rank`` listens, once published (TimeoutError past ``timeout`` seconds)."""
        with self._changed:
            if not self._changed.wait_for(lambda: rank in self._addresses, timeout):
                raise TimeoutError(f"rank {rank} did not publish its address in {timeout} s")
            return self._addresses[rank]


class KnownAddresses:
    """A :class:`Rendezvous` whose addresses were exchanged beforehand (publishing is a
    no-op): how the ranks of a program meet, their workers having met for them."""

    def __init__(self, addresses: list[tuple[str, int]]) -> None:
        self._addresses = [(str(host), int(port)) for host, port in addresses]

    def publish(self, rank: int, address: tuple[str, int]) -> None:
        """Nothing to do: the others know this rank's address already."""

    def lookup(self, rank: int, timeout: float) -> tuple[str, int]:
        """Where ``rank`` listens."""
        return self._addresses[rank]


class _Auth:
    """The challenge-response of one rank of one job."""

    def __init__(self, secret: bytes, job_id: str, rank: int, size: int) -> None:
        self.secret, self.job, self.rank, self.size = secret, job_id.encode(), rank, size

    def mac(self, rank: int, nonce: bytes, role: str = "") -> bytes:
        text = f"{self.job.decode()}:{rank}:{nonce.hex()}{role}".encode()
        return hmac.new(self.secret, text, hashlib.sha256).digest()

    def challenge(self, channel: Channel) -> tuple[int, bytes]:
        """Accepting: (rank, its nonce) of the connecting rank, else PermissionError."""
        nonce = os.urandom(_NONCE)
        channel.send([_MAGIC + nonce])
        (length,) = struct.unpack("!H", read_bytes(channel, 2))
        if length != len(self.job):  # not waiting for bytes that would not match anyway
            raise PermissionError("not a rank of this job")
        job = bytes(read_bytes(channel, length))
        (rank,) = struct.unpack("!I", read_bytes(channel, 4))
        answer, theirs = bytes(read_bytes(channel, 32)), bytes(read_bytes(channel, _NONCE))
        if not (
            hmac.compare_digest(job, self.job)
            and self.rank < rank < self.size
            and hmac.compare_digest(answer, self.mac(rank, nonce))
        ):
            raise PermissionError("not a rank of this job")
        return rank, theirs

    def respond(self, channel: Channel, peer: int) -> None:
        """Connecting to ``peer``: prove this rank, and check that it is ``peer``."""
        mine = os.urandom(_NONCE)
        try:
            greeting = bytes(read_bytes(channel, len(_MAGIC) + _NONCE))
            if not greeting.startswith(_MAGIC):
                raise ConnectionError(f"rank {peer}'s address is not a rank of an SPMD job")
            proof = self.mac(self.rank, greeting[len(_MAGIC) :])
            rank = struct.pack("!I", self.rank)
            channel.send([struct.pack("!H", len(self.job)) + self.job + rank + proof + mine])
            answer = bytes(read_bytes(channel, 32))
        except EOFError:
            raise ConnectionError(f"rank {peer} refused rank {self.rank} (secret?)") from None
        if not hmac.compare_digest(answer, self.mac(peer, mine, ":accept")):
            raise ConnectionError(f"rank {peer}'s address answered with a wrong secret")


def _own_address(host: str) -> str:
    """The address the other ranks may reach ``host`` at (this machine's when it is any)."""
    if host not in ("", "0.0.0.0", "::"):
        return host
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # sends nothing: picks the outgoing interface
        return probe.getsockname()[0]
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "127.0.0.1"


def _dial(address: tuple[str, int], deadline: float) -> socket.socket:
    """A TCP connection to ``address``, tried again until ``deadline`` while refused."""
    pause = 0.05
    while True:
        left = deadline - time.monotonic()
        try:
            wait = max(0.1, min(_HANDSHAKE_TIMEOUT, left))
            return socket.create_connection(address, timeout=wait)
        except OSError:
            if left <= pause:
                raise
        time.sleep(pause)
        pause = min(1.0, pause * 2)


def connect(
    rank: int,
    size: int,
    secret: bytes,
    job_id: str,
    rendezvous: Rendezvous,
    *,
    host: str = "0.0.0.0",
    advertise: str | None = None,
    timeout: float = 60.0,
    ssl_server: ssl.SSLContext | None = None,
    ssl_client: ssl.SSLContext | None = None,
    listener: socket.socket | None = None,
) -> Communicator:
    """Listen on a free port (or on ``listener``, a listening socket made elsewhere),
    publish (advertise or the host's address, port), look up every other rank, and connect
    the full mesh (rank j connects to every rank i < j; i accepts), each connection
    authenticated; return once every pair is connected. The listener is closed then.

    A single rank (``size == 1``) uses no socket and no rendezvous. Raises TimeoutError
    when the mesh is not complete after ``timeout`` seconds, ConnectionError when a lower
    rank refuses this one (another secret) or does not prove itself."""
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is not one of {size} ranks")
    if size == 1:
        return Communicator(0, 1)
    if len(job_id.encode()) > 0xFFFF:
        raise ValueError("the job id is too long")
    deadline = time.monotonic() + timeout
    auth = _Auth(bytes(secret), job_id, rank, size)
    if listener is None:
        listener = socket.create_server((host, 0), backlog=max(64, size))
    listener.settimeout(0.2)
    accepted: dict[int, Channel] = {}
    changed = threading.Condition()
    complete = threading.Event()

    def admit(sock: socket.socket) -> None:  # authenticate one connection of a higher rank
        channel = None
        try:
            sock.settimeout(max(0.1, min(_HANDSHAKE_TIMEOUT, deadline - time.monotonic())))
            channel = open_channel(sock, ssl_server, None)
            peer, nonce = auth.challenge(channel)
            with changed:
                if peer in accepted or complete.is_set():
                    raise PermissionError(f"rank {peer} is connected already")
                accepted[peer] = channel
            try:
                channel.send([auth.mac(rank, nonce, ":accept")])
                sock.settimeout(None)
            except OSError:
                with changed:
                    accepted.pop(peer, None)
                raise
            with changed:
                changed.notify_all()
        except Exception:  # an outsider, or a rank that went away: the mesh goes on
            (channel or sock).close()

    def serve() -> None:
        while not complete.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=admit, args=(sock,), daemon=True).start()

    links: dict[int, Channel] = {}
    server = threading.Thread(target=serve, name=f"spmd-{rank}-accept", daemon=True)
    try:
        rendezvous.publish(rank, (advertise or _own_address(host), listener.getsockname()[1]))
        server.start()
        for peer in range(rank):
            address = rendezvous.lookup(peer, max(0.0, deadline - time.monotonic()))
            sock = _dial(address, deadline)
            try:
                links[peer] = channel = open_channel(sock, ssl_client, address[0])
                auth.respond(channel, peer)
                sock.settimeout(None)
            except BaseException:
                sock.close()
                raise
        with changed:
            expected = size - 1 - rank
            left = max(0.0, deadline - time.monotonic())
            if not changed.wait_for(lambda: len(accepted) >= expected, left):
                missing = sorted(set(range(rank + 1, size)) - set(accepted))
                raise TimeoutError(f"rank {rank}: ranks {missing} did not connect in {timeout} s")
            complete.set()
            links.update(accepted)
    except BaseException:
        with changed:
            complete.set()
            links.update(accepted)
        for channel in links.values():
            channel.close()
        raise
    finally:
        complete.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes its accept()
        if server.is_alive():
            server.join(1.0)
        listener.close()
    return Communicator(rank, size, {peer: Link(peer, links[peer]) for peer in sorted(links)})
