"""How the SDK's HTTP pools are set up from the environment, and how it reads large
result bodies (from a real HTTP server)."""

from __future__ import annotations

import http.server
import mmap
import threading
import time
from typing import ClassVar

import pytest
import urllib3

from client_sdk import transport
from client_sdk.transport import _exchange, new_pool


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_a_direct_pool_without_a_proxy():
    pool = new_pool("http://gateway.example:5000", None)
    assert not isinstance(pool, urllib3.ProxyManager)


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    pool = new_pool("http://gateway.example:5000", None)
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy.host == "proxy.example"
    monkeypatch.setenv("NO_PROXY", "gateway.example")
    assert not isinstance(new_pool("http://gateway.example:5000", None), urllib3.ProxyManager)


def test_https_verifies_against_computethis_ca_then_the_requests_bundle(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/bundle.pem")
    assert new_pool("https://gateway.example", None).connection_pool_kw["ca_certs"] == (
        "/etc/bundle.pem"
    )
    pool = new_pool("https://gateway.example", "/my/ca.pem")
    assert pool.connection_pool_kw["ca_certs"] == "/my/ca.pem"
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"


# -- large result bodies, from a real HTTP server on a real port --------------------

BODY = bytes(range(256)) * ((3 << 20) // 256)  # 3 MiB: more than LARGE_BODY


class BodyHandler(http.server.BaseHTTPRequestHandler):
    """Serves BODY as a result body; ``/cut`` stops half way and closes the connection."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[set[tuple[str, int]]] = set()

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.connections.add(self.client_address)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.path == "/cut":
            self.wfile.write(BODY[: len(BODY) // 2])
            self.close_connection = True
        else:
            self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def body_server():
    BodyHandler.connections = set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BodyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_large_body_is_read_into_writable_memory_of_its_own(body_server):
    pool = new_pool(body_server, None)
    for _ in range(2):
        reply = _exchange(pool, "GET", f"{body_server}/body", None, {}, 10.0)
        assert isinstance(reply.content, memoryview) and not reply.content.readonly
        assert isinstance(reply.content.obj, mmap.mmap)
        assert reply.content == BODY
    assert len(BodyHandler.connections) == 1  # the connection was kept and used again


def test_a_large_body_cut_short_is_a_retryable_protocol_error(body_server):
    pool = new_pool(body_server, None)
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended after"):
        _exchange(pool, "GET", f"{body_server}/cut", None, {}, 10.0)


def test_backoff_doubles_its_pauses_and_stops_before_its_limit():
    backoff = transport.Backoff(limit=0.5)
    started = time.monotonic()
    pauses = 0
    while backoff.pause():
        pauses += 1
    assert 2 <= pauses <= 3  # 50, 100, 200 ms (each 0.5x-1.5x) fit in 0.5 s; 400 more do not
    assert time.monotonic() - started < 0.8  # the last pause may run past by its jitter
    assert backoff.delay == 0.05 * 2**pauses
