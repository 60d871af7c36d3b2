"""Requests the HTTP server refuses before the app sees them still get JSON errors."""

from __future__ import annotations

import json
import logging
import socket

import requests

from gateway.connections import MAX_HEADER_BYTES
from gateway.server import SpareThreads
from tests.stack import Stack


def raw_exchange(stack: Stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer; return status, headers and body."""
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, body = answer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["Content-Length"]):
            body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_oversized_headers_get_a_json_431(stack: Stack):
    headers = {**stack.headers(), "X-Padding": "a" * (MAX_HEADER_BYTES + 1)}
    response = requests.get(stack.api("/jobs"), headers=headers, timeout=30)
    assert response.status_code == 431
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "request_header_fields_too_large"
    assert str(MAX_HEADER_BYTES) in body["message"]


def test_an_overlong_url_gets_a_json_414(stack: Stack):
    url = stack.api("/jobs/" + "a" * (MAX_HEADER_BYTES + 1))
    response = requests.get(url, headers=stack.headers(), timeout=30)
    assert response.status_code == 414
    assert response.json()["error"] == "request_uri_too_long"


def test_a_malformed_request_line_gets_a_json_400(stack: Stack):
    status, headers, body = raw_exchange(stack, b"NONSENSE\r\n\r\n")
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "bad_request"


def test_the_gateway_still_serves_after_refusing(stack: Stack):
    raw_exchange(stack, b"GET /api/v1/health HTTP/1.1\r\nBad Header Line\r\n\r\n")
    assert requests.get(stack.api("/health"), timeout=30).status_code == 200


class FakePool:
    """The parts of cheroot's thread pool that SpareThreads reads and calls."""

    def __init__(self, idle: int, queued: int = 0, refuse: bool = False, first: int = 8) -> None:
        self.idle, self.qsize, self.refuse, self.min = idle, queued, refuse, first
        self.grown: list[int] = []
        self.shrunk: list[int] = []

    def grow(self, amount: int) -> None:
        self.grown.append(amount)
        if self.refuse:
            raise RuntimeError("can't start new thread")

    def shrink(self, amount: int) -> None:
        self.shrunk.append(amount)


def test_the_thread_pool_grows_to_keep_spare_threads_and_shrinks_when_calm():
    busy, calm, between = FakePool(idle=3, queued=5), FakePool(idle=60), FakePool(idle=30)
    for pool in (busy, calm, between):
        SpareThreads(pool, spare=16).adjust()
    assert (busy.grown, busy.shrunk) == ([16 - 3 + 5], [])
    assert (calm.grown, calm.shrunk) == ([], [60 - 16])
    assert (between.grown, between.shrunk) == ([], [])
    at_rest = FakePool(idle=64, first=64)  # every thread idle, none beyond the first
    SpareThreads(at_rest, spare=16).adjust()
    assert (at_rest.grown, at_rest.shrunk) == ([], [])


def test_a_refused_thread_is_logged_once_and_the_server_goes_on(caplog):
    pool = FakePool(idle=0, refuse=True)
    spare = SpareThreads(pool, spare=16)
    with caplog.at_level(logging.WARNING, logger="computethis"):
        spare.adjust()
        spare.adjust()
    assert pool.grown == [16, 16]  # asked again, without raising
    warnings = [record for record in caplog.records if "refused another" in record.message]
    assert len(warnings) == 1
    assert "pids limit" in warnings[0].message
