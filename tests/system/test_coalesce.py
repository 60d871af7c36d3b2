"""Concurrent ``compute`` calls travelling together in batches, through the real stack."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

import client_sdk
from client_sdk import Client, coalesce, compute_this
from client_sdk.errors import ComputeThisError
from client_sdk.pickling import dump_buffers
from tests.stack import Stack, wait_until
from tests.system.test_collect import divide, nap
from wire import batch_body, limits
from wire.http import JOB_HEADER
from wire.outcome_frames import MEDIA_TYPE, frame_head

POSTS = re.compile(
    r'computethis_http_request_duration_seconds_count\{endpoint="(\w+)",method="POST",'
    r'status="(\d+)"\} (\S+)'
)


@compute_this
def square(x: int) -> int:
    return x * x


def posts(stack: Stack) -> dict[tuple[str, str], float]:
    """How many POSTs the gateway answered, by endpoint and status, from its /metrics."""
    text = requests.get(f"{stack.url}/metrics", headers=stack.headers(), timeout=10).text
    return {(endpoint, status): float(count) for endpoint, status, count in POSTS.findall(text)}


def sent(
    before: dict[tuple[str, str], float],
    after: dict[tuple[str, str], float],
    endpoint: str,
    status: str | None = None,
) -> float:
    """POSTs to ``endpoint`` (answered ``status``, or any) between two :func:`posts`."""
    return sum(
        count - before.get(key, 0)
        for key, count in after.items()
        if key[0] == endpoint and status in (None, key[1])
    )


def in_flight(client: Client, calls: int) -> None:
    """Return once ``client`` has ``calls`` compute calls in flight (so the next one
    made is queued for a group)."""
    wait_until(
        lambda: client.coalescer.calls_in_flight() == calls, "calls not in flight", every=0.005
    )


def at_once(threads: int, call: Callable[[int], Any]) -> list[Any]:
    """``call(i)`` for i in range(threads), each on its own thread, started together;
    each outcome is its return value or the exception it raised."""
    barrier = threading.Barrier(threads)

    def run(i: int) -> Any:
        barrier.wait()
        try:
            return call(i)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(threads)))


def test_threads_computing_at_once_share_requests(sdk: Stack):
    before = posts(sdk)
    outcomes = at_once(16, lambda i: [square.compute(i * 100 + n) for n in range(10)])
    assert outcomes == [[(i * 100 + n) ** 2 for n in range(10)] for i in range(16)]
    after = posts(sdk)
    # 160 calls, but calls made while others were in flight went in shared batches.
    batches, alone = sent(before, after, "batch"), sent(before, after, "jobs")
    assert batches >= 1 and batches + alone < 160, (batches, alone)


def test_a_failing_call_fails_only_its_own_caller(sdk: Stack):
    outcomes = at_once(8, lambda i: divide.compute(i, 0 if i == 3 else 2))
    assert isinstance(outcomes[3], ZeroDivisionError)
    assert [outcome for i, outcome in enumerate(outcomes) if i != 3] == [
        i / 2 for i in range(8) if i != 3
    ]


def test_a_quick_call_is_not_held_up_by_a_slow_one_in_its_batch(sdk: Stack):
    first = threading.Thread(target=nap.compute, args=(1.0,))
    first.start()  # in flight: the calls below are queued and batched
    in_flight(client_sdk.default_client(), 1)
    before = posts(sdk)
    durations = at_once(4, lambda i: _timed(nap.compute, 5.0 if i == 0 else 0.0))
    first.join()
    assert sent(before, posts(sdk), "batch") >= 1
    assert durations[0] >= 5.0
    assert max(durations[1:]) < 4.0, durations  # each outcome arrives as its job ends


def test_calls_with_other_options_go_in_other_batches(sdk: Stack):
    @compute_this(name="labelled")
    def labelled(x: int) -> int:
        return -x

    outcomes = at_once(8, lambda i: (square if i % 2 else labelled).compute(i))
    assert outcomes == [i * i if i % 2 else -i for i in range(8)]


def test_a_call_too_large_for_a_batch_is_posted_alone(sdk: Stack):
    big = b"x" * (limits.MAX_CALL_BYTES + 1)

    @compute_this
    def length(data: bytes) -> int:
        return len(data)

    outcomes = at_once(4, lambda i: length.compute(big if i == 0 else b"y" * i))
    assert outcomes == [len(big), 1, 2, 3]


def _timed(call: Callable[..., Any], *args: Any) -> float:
    start = time.monotonic()
    call(*args)
    return time.monotonic() - start


class CuttingProxy:
    """A TCP proxy to the gateway that cuts its first answer to ``POST /batches`` right
    after the answer's headers, as a gateway killed at that moment would."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit("//", 1)[1].split(":")
        self.target = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.cuts = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            cut_next = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, cut_next)).start()
            threading.Thread(target=self._answers, args=(upstream, client, cut_next)).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, cut_next) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if data.startswith(b"POST /api/v1/batches") and not self.cuts:
                        self.cuts += 1
                        cut_next.set()
                upstream.sendall(data)
        upstream.close()

    def _answers(self, upstream: socket.socket, client: socket.socket, cut_next) -> None:
        received = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not cut_next.is_set():
                    client.sendall(data)
                    continue
                received += data
                if b"\r\n\r\n" in received:  # the headers, then nothing
                    client.sendall(received[: received.index(b"\r\n\r\n") + 4])
                    break
        for sock in (client, upstream):  # shutdown: a thread may be reading from it
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def job_count(stack: Stack) -> int:
    listing = requests.get(
        stack.api("/jobs"), params={"limit": 1000}, headers=stack.headers(), timeout=30
    ).json()
    assert listing["next_cursor"] is None, "more jobs than one page"
    return len(listing["jobs"])


def test_an_answer_cut_before_it_lists_the_jobs_is_asked_for_again(sdk: Stack):
    proxy = CuttingProxy(sdk.url)
    before = job_count(sdk)
    try:
        client_sdk.configure(url=proxy.url)  # the sdk fixture puts the default back
        first = threading.Thread(target=nap.compute, args=(1.0,))
        first.start()  # in flight: the calls below are batched
        in_flight(client_sdk.default_client(), 1)
        outcomes = at_once(4, square.compute)
        first.join()
    finally:
        proxy.close()
    assert outcomes == [0, 1, 4, 9]
    assert proxy.cuts == 1
    # Asked again under the same Idempotency-Key: the jobs stored the first time.
    assert job_count(sdk) - before == 5


def _compute_in_child(results: Any) -> None:
    pool = client_sdk.default_client().transport.pool()
    results.put((square.compute(7), getattr(pool, "owner", "child")))


def test_a_process_forked_while_calls_are_in_flight_computes(sdk: Stack):
    context = multiprocessing.get_context("fork")
    first = threading.Thread(target=nap.compute, args=(2.0,))
    first.start()  # in flight while the child is forked
    in_flight(client_sdk.default_client(), 1)
    client_sdk.default_client().transport.pool().owner = "parent"  # this thread's connection
    results = context.Queue()
    child = context.Process(target=_compute_in_child, args=(results,))
    with client_sdk.default_client().coalescer._lock:  # forked in compute's bookkeeping
        child.start()
    try:
        # The child computes, over a connection of its own.
        assert results.get(timeout=30) == (49, "child")
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
        first.join()


@pytest.mark.parametrize(("limit", "sizes"), [(3, [3, 3, 1]), (2, [2, 2, 2, 1])])
def test_a_batch_takes_at_most_max_calls(monkeypatch, limit: int, sizes: list[int]):
    monkeypatch.setattr(limits, "MAX_CALLS", limit)
    queue = [coalesce.QueuedCall(b"call") for _ in range(7)]
    taken = []
    while queue:
        taken.append(len(coalesce._take_group(queue)))
    assert taken == sizes


def test_a_batch_takes_at_most_max_bytes_but_always_one_call(monkeypatch):
    monkeypatch.setattr(limits, "MAX_BATCH_BYTES", 2 * (batch_body.LENGTH_BYTES + 10))
    queue = [coalesce.QueuedCall(b"x" * size) for size in (10, 10, 10, 100, 10)]
    taken = []
    while queue:
        taken.append([len(call.payload) for call in coalesce._take_group(queue)])
    assert taken == [[10, 10], [10], [100], [10]]


class OlderGateway(BaseHTTPRequestHandler):
    """A gateway from before batches streamed their outcomes: ``POST /batches`` answers
    the stored jobs' JSON at once; ``POST /jobs?wait`` answers its result after a
    second, so that a call made meanwhile goes in a batch."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/api/v1/batches"):
            body = json.dumps({"jobs": [{"id": "b" * 32, "status": "queued"}]}).encode()
            self._answer(201, "application/json", body, {})
        else:
            time.sleep(1.0)
            body = bytes(dump_buffers(1, index=True))
            self._answer(200, "application/octet-stream", body, {JOB_HEADER: "a" * 32})

    def _answer(self, status: int, kind: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": kind, **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_gateway_that_does_not_stream_batches_is_told_apart():
    server = ThreadingHTTPServer(("127.0.0.1", 0), OlderGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    older = Client(f"http://127.0.0.1:{server.server_port}", "token")
    previous = client_sdk.set_default_client(older)
    try:
        alone = ThreadPoolExecutor(1)
        first = alone.submit(square.compute, 1)  # in flight: the next call is batched
        in_flight(older, 1)
        with pytest.raises(ComputeThisError, match="without streaming its outcomes"):
            square.compute(2)
        assert first.result(timeout=30) == 1
        alone.shutdown()
    finally:
        client_sdk.set_default_client(previous)
        server.shutdown()
        server.server_close()


class SlowBatchGateway(BaseHTTPRequestHandler):
    """``POST /jobs?wait`` answers its result after 3 s; ``POST /batches`` takes 2 s
    to list its jobs (as if storing them), then streams each one's result: 4. Counts
    the calls of every batch it receives."""

    protocol_version = "HTTP/1.1"
    batches: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/api/v1/batches"):
            calls = len(batch_body.decode(body, max_items=limits.MAX_CALLS))
            self.batches.append(calls)
            time.sleep(2.0)
            ids = [f"{len(self.batches)}{i:031d}" for i in range(calls)]
            result = bytes(dump_buffers(4, index=True))
            frames = frame_head({"jobs": [{"id": job_id} for job_id in ids]}, 0)
            for job_id in ids:
                frames += frame_head({"id": job_id, "status": "finished"}, len(result)) + result
            self._answer(201, MEDIA_TYPE, frames, {})
        else:
            time.sleep(3.0)
            body = bytes(dump_buffers(1, index=True))
            self._answer(200, "application/octet-stream", body, {JOB_HEADER: "a" * 32})

    _answer = OlderGateway._answer
    log_message = OlderGateway.log_message


def test_a_call_interrupted_while_queued_for_a_batch_is_never_sent():
    """Ctrl-C while a call waits in its lane's queue (the batch before it still being
    stored): it is taken out, and no batch ever carries it."""
    SlowBatchGateway.batches = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowBatchGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slow = Client(f"http://127.0.0.1:{server.server_port}", "token")
    previous = client_sdk.set_default_client(slow)
    others = ThreadPoolExecutor(2)
    try:
        alone = others.submit(square.compute, 1)  # in flight: later calls are batched
        in_flight(slow, 1)
        batched = others.submit(square.compute, 2)  # its batch takes 2 s to be listed
        wait_until(lambda: SlowBatchGateway.batches == [1], "the batch never arrived", every=0.01)
        # As from a terminal, even when pytest runs in a shell's background (SIGINT ignored).
        handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        ctrl_c = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        ctrl_c.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                square.compute(3)  # queued behind that batch
        finally:
            ctrl_c.cancel()  # had the call returned, a late Ctrl-C would stop pytest
            signal.signal(signal.SIGINT, handler)
        assert batched.result(timeout=30) == 4
        assert alone.result(timeout=30) == 1
        time.sleep(0.5)  # a batch posted after the others' answers would be in by now
        assert SlowBatchGateway.batches == [1]
    finally:
        others.shutdown()
        client_sdk.set_default_client(previous)
        server.shutdown()
        server.server_close()
