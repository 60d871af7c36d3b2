"""Serve the gateway app with cheroot (HTTP or HTTPS) and run it until a signal arrives."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import threading
import time
from typing import IO, Any

from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter
from cheroot.workers.threadpool import ThreadPool
from cheroot.wsgi import Server
from werkzeug.wsgi import FileWrapper

from gateway.app import create_app
from gateway.config import GatewayConfig, TlsFiles
from gateway.connections import (
    MAX_HEADER_BYTES,
    ConnectionCounters,
    ConnectionLimits,
    GuardedConnection,
    GuardedConnections,
)
from gateway.parking import ParkingGateway
from gateway.services import EXTENSION, Services

log = logging.getLogger("computethis")

# A request holds a thread from its first byte to its answer's last, except while it
# waits for jobs (long-polls and streams are parked: gateway.parking). Idle and silent
# connections hold none (gateway.connections). The pool starts with DEFAULT_THREADS and
# grows to keep SPARE_THREADS free, up to MAX_THREADS (see SpareThreads); one client
# address can hold at most --max-connections-per-address of them.
DEFAULT_THREADS = 64
SPARE_THREADS = 16
MAX_THREADS = 8192
TOKEN_ENV = "COMPUTETHIS_TOKEN"
IDLE_TIMEOUT = 120  # seconds a connection may sit silent (before or between requests)
STOP_GRACE = 5.0  # seconds requests in progress get to finish when the gateway stops
BACKLOG = 1024  # pending TCP connections: many clients may connect at once
FILE_BLOCK = 1 << 20  # bytes per write when streaming a stored result


def resolve_token(token: str | None) -> tuple[str, bool]:
    """``--token``, else ``$COMPUTETHIS_TOKEN``, else a new random one (generated=True)."""
    if token:
        return token, False
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], False
    return secrets.token_urlsafe(24), True


class PortInUse(OSError):
    """The gateway's HTTP port is taken by another process."""


class StoppableThreadPool(ThreadPool):
    """cheroot's thread pool, whose stop also ends a response that its client stopped reading.

    When its grace period (``shutdown_timeout``, STOP_GRACE) runs out, cheroot shuts each busy
    connection for reading only and then waits for its thread without a limit: a thread
    sending a result to a client that no longer reads (a paused process, a dropped
    network) held the gateway's stop for the socket's idle timeout (120 s). Shutting the
    connection both ways wakes that thread at once.
    """

    @staticmethod
    def _force_close(conn: HTTPConnection | None) -> None:
        if conn is None or conn.rfile.closed:
            return
        with contextlib.suppress(OSError):
            conn.socket.shutdown(socket.SHUT_RDWR)


class GatewayServer(Server):
    """cheroot's WSGI server with the gateway's connection guards
    (:mod:`gateway.connections`): ``limits`` to enforce, ``counters`` for ``/metrics``."""

    ConnectionClass = GuardedConnection

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = ParkingGateway  # long-polls and streams wait without a thread
        self.limits = limits
        self.counters = ConnectionCounters()

    def process_conn(self, conn: Any) -> None:
        """Hand ``conn`` to a worker thread once its request's line and headers have all
        arrived; until then it waits in the selector (:mod:`gateway.sockets`)."""
        if not self._connections.still_gathering(conn):
            super().process_conn(conn)

    def prepare(self) -> None:
        """Bind and listen, with :class:`GuardedConnections` taking the connections."""
        super().prepare()
        if self.ready:
            plain, self._connections = self._connections, GuardedConnections(self)
            plain._selector.close()


def make_server(
    app: Any,
    *,
    host: str,
    port: int,
    threads: int = DEFAULT_THREADS,
    tls: TlsFiles | None = None,
    limits: ConnectionLimits | None = None,
) -> GatewayServer:
    """A cheroot WSGI server for ``app``; HTTPS when ``tls`` is given.

    The socket is bound here (port 0 picks a free one: see ``server.bind_addr``).
    """
    server = GatewayServer(
        (host, port),
        _large_file_blocks(app),
        numthreads=threads,
        max=max(threads, MAX_THREADS),
        request_queue_size=BACKLOG,
        timeout=IDLE_TIMEOUT,
        server_name="computethis",
        limits=limits or ConnectionLimits(),
    )
    server.requests = StoppableThreadPool(server, min=server.requests.min, max=server.requests.max)
    server.shutdown_timeout = STOP_GRACE
    server.max_request_header_size = MAX_HEADER_BYTES
    server.keep_alive_conn_limit = None  # every client keeps its connection open
    if tls is not None:
        server.ssl_adapter = BuiltinSSLAdapter(tls.certfile, tls.keyfile or tls.certfile)
    try:
        server.prepare()
    except OSError as exc:
        if os.strerror(errno.EADDRINUSE) in str(exc):  # cheroot keeps only the message
            raise PortInUse(
                f"cannot serve on {_url_host(host)}:{port}: the port is already in use "
                "(another computethis gateway?). Stop what listens there or pass another --port."
            ) from exc
        raise
    return server


def _large_file_blocks(app: Any) -> Any:
    """Have ``send_file`` stream files (results) in 1 MiB blocks rather than 8 KiB ones."""

    def file_wrapper(file: IO[bytes], block_size: int = FILE_BLOCK) -> FileWrapper:
        return FileWrapper(file, max(block_size, FILE_BLOCK))

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.file_wrapper"] = file_wrapper
        return app(environ, start_response)

    return wrapped


def run_gateway(
    scheduler: Any,
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    token_generated: bool = False,
    threads: int = DEFAULT_THREADS,
    tls: TlsFiles | None = None,
) -> None:
    """Serve the gateway in the foreground until SIGINT/SIGTERM, then stop cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(config, scheduler)
    state: Services = app.extensions[EXTENSION]
    limits = ConnectionLimits.of(config)
    server = make_server(app, host=host, port=port, threads=threads, tls=tls, limits=limits)
    scheme = "https" if tls else "http"
    bound_port = server.bind_addr[1]
    url = f"{scheme}://{_url_host(host)}:{bound_port}"
    state.start()
    stop = StopSignals()
    serving = threading.Thread(target=server.serve, name="computethis-http", daemon=True)
    serving.start()
    note = "  (generated; pass --token or set COMPUTETHIS_TOKEN to keep one)"
    print(f"computethis gateway at {url}", flush=True)
    print(f"token: {config.token}" + (note if token_generated else ""), flush=True)
    spare_threads = SpareThreads(server.requests)
    state.metrics.watch_http_server(server.requests, server.counters)
    try:
        while stop.requested is None and serving.is_alive():
            spare_threads.adjust()
            time.sleep(StopSignals.POLL)
    finally:
        started = time.monotonic()
        log.info("stopping gateway")
        state.stop_waiting()  # every waiting (parked) answer is sent now
        try:
            server.stop()
            serving.join(timeout=5)
            log.info("HTTP server stopped in %.1f s", time.monotonic() - started)
        finally:
            state.close()  # its threads would otherwise keep the process alive
            log.info("gateway stopped in %.1f s", time.monotonic() - started)
    if stop.requested is None:
        raise RuntimeError("the HTTP server stopped on its own: see the error above")


class StopSignals:
    """SIGINT and SIGTERM ask the gateway to stop; a second Ctrl+C while it stops exits at once.

    The handler only sets a flag: raising ``KeyboardInterrupt`` into whatever the main
    thread was doing could leave the HTTP server's loop or a lock half-way, and the
    process would then never finish stopping. A repeated SIGTERM is ignored (``timeout``
    sends two at once; the graceful stop goes on).
    """

    POLL = 0.1  # seconds between looks at the flag

    def __init__(self) -> None:
        self.requested: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is None:
            self.requested = signum
        elif signum == signal.SIGINT:
            log.warning("Ctrl+C again while stopping: exiting now")
            logging.shutdown()
            os._exit(128 + signum)


class SpareThreads:
    """Keeps ``spare`` threads of the HTTP server's pool free: ``adjust`` grows the pool
    when fewer are, and shrinks it back once more than three times that many, and more
    than its first size, are idle (a pool at rest is left alone).

    cheroot's pool does not grow by itself: once every thread is busy (many large
    uploads or downloads at once), any other request (a submission, ``/health``) would
    queue until one ends. Growing covers the requests already queued too. ``pool.max``
    caps it, and shrinking never goes below the pool's first size (``pool.min``).
    """

    def __init__(self, pool: ThreadPool, spare: int = SPARE_THREADS) -> None:
        self.pool = pool
        self.spare = spare
        self.refused = False  # the system refused a new thread (a process limit)

    def adjust(self) -> None:
        idle = self.pool.idle
        if idle < self.spare:
            try:
                self.pool.grow(self.spare - idle + self.pool.qsize)
            except RuntimeError as exc:  # "can't start new thread"
                if not self.refused:
                    log.warning(
                        "the system refused another HTTP server thread (%s): requests may "
                        "wait while every thread is busy; raise the process or pids limit",
                        exc,
                    )
                self.refused = True
        elif idle > max(3 * self.spare, self.pool.min):
            self.pool.shrink(idle - self.spare)


def _url_host(host: str) -> str:
    try:
        is_v6 = socket.inet_pton(socket.AF_INET6, host) is not None
    except OSError:
        is_v6 = False
    return f"[{host}]" if is_v6 else host
