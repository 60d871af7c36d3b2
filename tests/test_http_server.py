"""Requests the HTTP server refuses before the app sees them still get JSON errors."""

from __future__ import annotations

import json
import socket

import requests

from gateway.server import MAX_HEADER_BYTES
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
