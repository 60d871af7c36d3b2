"""Slow and idle clients can't hold the gateway: `computethis up` with a 2 s header
timeout and 8 connections per address, driven from raw sockets on several loopback
addresses (127.0.0.2, 127.0.0.3, ...: each is a client address of its own)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import dill
import pytest
import requests

from tests.stack import Stack, scrape_metrics, start_stack, wait_until
from wire.http import API_PREFIX, JOBS_PATH

HEADER_TIMEOUT = 2.0
PER_ADDRESS = 8


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = [
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--max-connections-per-address",
        str(PER_ADDRESS),
    ]
    stack = start_stack(tmp_path_factory.mktemp("guarded") / "save", workers=1, extra=extra)
    yield stack
    stack.stop()


def connect(stack: Stack, source: str) -> socket.socket:
    """A TCP connection to the gateway from the loopback address ``source``."""
    host, port = stack.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0))
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """The status, headers and JSON body of the one answer on ``sock``."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {answer!r}"
        answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["Content-Length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the gateway closed ``sock`` (a read returns nothing or is reset)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def ask_health(sock: socket.socket) -> int:
    """``GET /health`` on the open connection ``sock`` (kept open); its status."""
    sock.sendall(f"GET {API_PREFIX}/health HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return read_answer(sock)[0]


def health(stack: Stack, source: str = "127.0.0.1") -> int:
    """The status of ``GET /health`` on a new connection from ``source``."""
    with contextlib.closing(connect(stack, source)) as sock:
        return ask_health(sock)


def test_headers_trickled_past_the_deadline_are_answered_408(guarded: Stack):
    with contextlib.closing(connect(guarded, "127.0.0.2")) as sock:
        started = time.monotonic()
        sock.sendall(f"GET {API_PREFIX}/health HTTP/1.1\r\nHost: x\r\n".encode())
        sock.settimeout(0.2)
        answer = None
        while answer is None and time.monotonic() - started < 10:
            try:
                sock.sendall(b"X-Trickle: a\r\n")  # a header line every 0.2 s, never the end
            except OSError:
                break
            with contextlib.suppress(TimeoutError):
                sock.settimeout(0.2)
                answer = sock.recv(65536)
        elapsed = time.monotonic() - started
        assert answer and answer.startswith(b"HTTP/1.1 408 "), answer
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "request_timeout" and f"{HEADER_TIMEOUT:g} s" in body["message"]
        assert HEADER_TIMEOUT - 0.1 < elapsed < HEADER_TIMEOUT + 3
        sock.settimeout(10)
        assert closed_by_server(sock)


def test_a_small_body_late_past_the_deadline_is_answered_408(guarded: Stack):
    payload = dill.dumps((abs, (-1,), {}))
    head = (
        f"POST {JOBS_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {guarded.token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    before = guarded_jobs(guarded)
    with contextlib.closing(connect(guarded, "127.0.0.2")) as sock:
        sock.sendall(head.encode() + payload[:5])  # the rest never comes
        sock.settimeout(HEADER_TIMEOUT + 10)
        status, _, body = read_answer(sock)
    assert status == 408 and body["error"] == "request_timeout", body
    assert guarded_jobs(guarded) == before  # nothing was stored


def guarded_jobs(stack: Stack) -> int:
    answer = requests.get(f"{stack.url}{JOBS_PATH}", headers=stack.headers(), timeout=30)
    return len(answer.json()["jobs"])


def test_a_slow_but_steady_large_upload_goes_through(guarded: Stack):
    payload = dill.dumps((len, (b"x" * (2 << 20),), {}))
    head = (
        f"POST {JOBS_PATH}?wait=30 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {guarded.token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    block = 64 * 1024
    started = time.monotonic()
    with contextlib.closing(connect(guarded, "127.0.0.3")) as sock:
        sock.sendall(head.encode())
        for offset in range(0, len(payload), block):  # ~8 s in all: 4 times the deadline
            sock.sendall(payload[offset : offset + block])
            time.sleep(0.25)
        assert time.monotonic() - started > 3 * HEADER_TIMEOUT
        sock.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ") or answer.startswith(b"HTTP/1.1 201 "), answer[:200]


def test_a_connection_that_sends_nothing_is_closed_after_the_deadline(guarded: Stack):
    with contextlib.closing(connect(guarded, "127.0.0.4")) as sock:
        started = time.monotonic()
        sock.settimeout(HEADER_TIMEOUT + 10)
        assert closed_by_server(sock)
        assert HEADER_TIMEOUT - 0.1 < time.monotonic() - started < HEADER_TIMEOUT + 3


def test_connections_that_send_nothing_yet_hold_no_thread(guarded: Stack):
    """Checked within the header timeout, before the gateway closes them."""
    idle_before = scrape_metrics(guarded)["computethis_http_threads_idle"]
    sockets = []
    try:
        for address in range(10, 35):  # 25 addresses x 8 = 200 idle connections
            for _ in range(PER_ADDRESS):
                sockets.append(connect(guarded, f"127.0.0.{address}"))
        wait_until(
            lambda: scrape_metrics(guarded)["computethis_http_connections_open"] >= 200,
            "the gateway does not count the silent connections",
            every=0.02,
        )
        samples = scrape_metrics(guarded)
        # Each would have held a thread: the pool keeps 16 free, growing to do so.
        assert samples["computethis_http_threads_idle"] >= idle_before - 2
        assert health(guarded) == 200
    finally:
        for sock in sockets:
            sock.close()


def test_requests_whose_headers_trickle_hold_no_thread(guarded: Stack):
    """A slowloris costs a socket, not a thread: checked within the header timeout."""
    threads_before = scrape_metrics(guarded)["computethis_http_threads"]
    sockets = []
    try:
        for address in range(40, 60):  # 20 addresses x 8 = 160 half-sent requests
            for _ in range(PER_ADDRESS):
                sock = connect(guarded, f"127.0.0.{address}")
                sock.sendall(f"GET {API_PREFIX}/health HTTP/1.1\r\nHost: x\r\n".encode())
                sockets.append(sock)
        for sock in sockets:
            sock.sendall(b"X-Trickle: a\r\n")
        samples = scrape_metrics(guarded)
        assert samples["computethis_http_connections_open"] >= 160
        # Each would have held a thread: the pool keeps 16 free, growing to do so.
        assert samples["computethis_http_threads"] <= threads_before + 2
        assert health(guarded) == 200
        sockets[0].sendall(b"\r\n")  # its headers end: it is answered
        sockets[0].settimeout(10)
        assert read_answer(sockets[0])[0] == 200
    finally:
        for sock in sockets:
            sock.close()


def test_two_requests_sent_at_once_are_both_answered(guarded: Stack):
    one = f"GET {API_PREFIX}/health HTTP/1.1\r\nHost: x\r\n\r\n"
    with contextlib.closing(connect(guarded, "127.0.0.6")) as sock:
        sock.sendall((one + one).encode())
        sock.settimeout(10)
        answers = b""
        while answers.count(b"HTTP/1.1 200 ") < 2:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk


def test_one_address_gets_its_share_and_a_clear_503_beyond_it(guarded: Stack):
    held = [connect(guarded, "127.0.0.5") for _ in range(PER_ADDRESS)]
    for sock in held:  # kept-alive connections: they stay open, idle, past the timeout
        assert ask_health(sock) == 200
    try:
        wait_until(
            lambda: (
                scrape_metrics(guarded)["computethis_http_connections_busiest_address"]
                == PER_ADDRESS
            ),
            "the address's connections are not counted",
        )
        with contextlib.closing(connect(guarded, "127.0.0.5")) as extra:
            status, headers, body = read_answer(extra)
        assert status == 503 and headers["Retry-After"] == "1"
        assert body["error"] == "service_unavailable"
        assert f"{PER_ADDRESS} connections from your address" in body["message"]
        assert health(guarded, "127.0.0.6") == 200  # other addresses are served
        assert scrape_metrics(guarded)["computethis_http_connections_refused_total"] >= 1
    finally:
        held.pop().close()  # one closes: the address has room again
    try:
        wait_until(
            lambda: health(guarded, "127.0.0.5") == 200,
            "the address was not let back in after one of its connections closed",
        )
    finally:
        for sock in held:
            sock.close()


def test_the_timeouts_are_counted(guarded: Stack):
    before = scrape_metrics(guarded)["computethis_http_requests_timed_out_total"]
    with contextlib.closing(connect(guarded, "127.0.0.7")) as sock:
        sock.settimeout(HEADER_TIMEOUT + 10)
        assert closed_by_server(sock)
    assert scrape_metrics(guarded)["computethis_http_requests_timed_out_total"] == before + 1
