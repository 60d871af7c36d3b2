"""HTTP to a gateway (:class:`Transport`): one urllib3 pool per thread, JSON errors,
retries with backoff.

urllib3 directly rather than requests: requests' per-request work (merging session,
environment and proxy settings) cost ~1 ms of a ~13 ms call here. What requests read
from the environment is read once per thread and gateway instead: ``HTTP(S)_PROXY`` /
``NO_PROXY``, and ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` when ``COMPUTETHIS_CA``
is not set.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import platform
import random
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import dill
import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError, SSLError

from client_sdk.config import Settings
from client_sdk.errors import ApiError, GatewayUnreachable, UntrustedCertificate
from client_sdk.pickling import Pickled
from wire.http import API_PREFIX, DILL_HEADER, PYTHON_HEADER

RETRY_FOR = 60.0  # seconds of connection errors ridden out before giving up
BUSY_RETRY_FOR = 600.0  # seconds of 429 (too many queued jobs) waited out before giving up
HEADERS = {
    "User-Agent": "computethis-sdk",
    PYTHON_HEADER: platform.python_version(),
    DILL_HEADER: dill.__version__,
}
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# Result bodies larger than this are read into memory of their own (see _read_large).
LARGE_BODY = 1 << 20


@dataclass
class Reply:
    """A gateway response, read whole; or, for a streamed one, still to be read.

    ``content`` is bytes, or for a large result body a writable memoryview. A reply
    to ``request(..., stream=True)`` has an empty ``content``: read its body with
    :meth:`read_exactly`, then :meth:`close` it.
    """

    status: int
    headers: urllib3.HTTPHeaderDict
    content: bytes | memoryview
    stream: urllib3.BaseHTTPResponse | None = None

    def json(self) -> Any:
        return json.loads(self.content)

    def read_exactly(self, size: int) -> bytes | memoryview:
        """The next ``size`` bytes of a streamed body (a writable memoryview for a
        large read); ProtocolError if the body ends first, ReadTimeoutError if the
        gateway falls silent."""
        assert self.stream is not None
        raw = self.stream._fp  # type: ignore[attr-defined]  # see _read_large
        if size > LARGE_BODY:
            view = memoryview(mmap.mmap(-1, size))
            _read_into(raw, view)
            return view
        data = bytearray(size)
        _read_into(raw, memoryview(data))
        return bytes(data)

    def at_end(self) -> bool:
        """True if a streamed body has ended (no byte left to read)."""
        assert self.stream is not None
        raw = self.stream._fp  # type: ignore[attr-defined]
        with _as_urllib3_errors():
            return not raw.peek(1)

    def close(self, finished: bool = False) -> None:
        """Done with a streamed reply: keep the connection if the body was read to its
        end (``finished``), drop it otherwise."""
        if self.stream is None:
            return
        if finished:
            self.stream.release_conn()
        else:
            self.stream.close()


class Backoff:
    """Pauses between retries: 50 ms doubling up to 2 s, with jitter, for up to
    ``limit`` seconds in all."""

    def __init__(self, limit: float | None = None) -> None:
        self.deadline = time.monotonic() + (RETRY_FOR if limit is None else limit)
        self.delay = 0.05

    def pause(self) -> bool:
        """Sleep before the next try; False, without sleeping, once the limit is near."""
        if time.monotonic() + self.delay > self.deadline:
            return False
        time.sleep(self.delay * (0.5 + random.random()))
        self.delay = min(self.delay * 2, 2.0)
        return True


class Transport:
    """HTTP to one gateway: its :class:`Settings`, one kept-alive urllib3 pool per
    thread, JSON errors, retries with backoff."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    def forget_connections(self) -> None:
        """(in a forked child) Open connections of its own: the parent's stay the parent's."""
        self._local = threading.local()

    def pool(self) -> urllib3.PoolManager:
        """This thread's pool for the gateway (one kept-alive connection per thread)."""
        try:
            return self._local.pool
        except AttributeError:
            pool = self._local.pool = new_pool(self.settings.url, self.settings.ca)
            return pool

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: bytes | Pickled | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        stream: bool = False,
        safe: bool = False,
        retry_for: float | None = None,
    ) -> Reply:
        """Send a request, retrying connection errors with backoff for up to ``retry_for``
        seconds (default ``RETRY_FOR``).

        A POST is only retried when it is ``safe`` (it changes nothing) or carries an
        ``Idempotency-Key`` (the gateway then answers a repeat with the job it already
        created). Error statuses raise ApiError. With ``stream``, a successful reply's
        body is left to read (see :class:`Reply`).
        """
        config = self.settings
        all_headers = {**HEADERS, **(headers or {})}
        if config.token:
            all_headers["Authorization"] = f"Bearer {config.token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        if data is not None:
            all_headers["Content-Length"] = str(len(data))
        url = f"{config.url}{API_PREFIX}{path}"
        query = {key: value for key, value in (params or {}).items() if value is not None}
        if query:
            url = f"{url}?{urlencode(query)}"
        retry = safe or method != "POST" or "Idempotency-Key" in all_headers
        backoff = Backoff(retry_for)
        busy_deadline = time.monotonic() + BUSY_RETRY_FOR
        while True:
            try:
                reply = _exchange(self.pool(), method, url, data, all_headers, timeout, stream)
            except SSLError as exc:
                # Not a passing fault: retrying would fail the same way.
                raise UntrustedCertificate(
                    f"the gateway at {config.url} failed the TLS check ({exc}); if it uses "
                    "a private CA, point COMPUTETHIS_CA at that CA's PEM file"
                ) from exc
            except ReadTimeoutError as exc:
                raise GatewayUnreachable(
                    f"the computethis gateway at {config.url} did not answer {method} "
                    f"{path} within {timeout:g} s; check that it is running and not overloaded"
                ) from exc
            except HTTPError as exc:
                # Refused, reset, or cut off mid-reply (the gateway died): safe to repeat,
                # since GETs are idempotent and POSTs carry an Idempotency-Key.
                if not retry or not backoff.pause():
                    raise GatewayUnreachable(
                        f"cannot reach the computethis gateway at {config.url} ({exc}); "
                        "is `computethis up` running, and is COMPUTETHIS_URL right?"
                    ) from exc
                continue
            if reply.status == 429 and time.monotonic() < busy_deadline:
                # Too many queued jobs: wait as the gateway asks, then try again.
                time.sleep(_retry_after(reply) * (0.5 + random.random()))
                continue
            if reply.status >= 400:
                raise _api_error(reply)
            return reply

    def post_call(
        self,
        path: str,
        data: bytes | Pickled,
        params: dict[str, Any] | None = None,
        timeout: float = 30.0,
        *,
        key: str | None = None,
        stream: bool = False,
    ) -> Reply:
        """POST pickled bytes under an ``Idempotency-Key`` (``key``, else a fresh one), so
        that a connection error is retried without creating the job(s) twice."""
        return self.request(
            "POST",
            path,
            params=params,
            data=data,
            headers={
                "Content-Type": "application/octet-stream",
                "Idempotency-Key": key or uuid.uuid4().hex,
            },
            timeout=timeout,
            stream=stream,
        )


def _exchange(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    data: bytes | Pickled | None,
    headers: dict[str, str],
    timeout: float,
    stream: bool = False,
) -> Reply:
    """One request and its whole body, read in one call (not in small blocks); with
    ``stream``, a successful reply's body is not read."""
    response = pool.request(
        method,
        url,
        body=data,
        headers=headers,
        timeout=timeout,
        retries=False,
        redirect=False,
        preload_content=False,
    )
    if stream and response.status < 400:
        return Reply(response.status, response.headers, b"", response)
    try:
        content = _read_large(response)
        if content is None:
            content = response.read(decode_content=True)
    except BaseException:
        response.close()  # the connection is in an unknown state: drop it
        raise
    response.release_conn()
    return Reply(response.status, response.headers, content)


def _read_large(response: urllib3.BaseHTTPResponse) -> memoryview | None:
    """A large result body read straight into fresh writable memory; None otherwise.

    Writable, so that unpickling can hand out its arrays as views of it instead of
    copying them (see :func:`client_sdk.pickling.load_buffers`); read with the
    standard library response's ``readinto`` (urllib3 keeps it as ``_fp``), since
    urllib3's own reads return new bytes for every block.
    """
    raw = getattr(response, "_fp", None)
    length = response.headers.get("Content-Length", "")
    if (
        not length.isdigit()
        or int(length) <= LARGE_BODY
        or response.headers.get("Content-Encoding")
        or not response.headers.get("Content-Type", "").startswith("application/octet-stream")
        or not hasattr(raw, "readinto")
    ):
        return None
    view = memoryview(mmap.mmap(-1, int(length)))  # pages untouched until read into
    _read_into(raw, view)
    return view


def _read_into(raw: Any, view: memoryview) -> None:
    """Fill ``view`` from the standard library response ``raw`` (which undoes chunked
    encoding), reporting errors as urllib3 does, so that callers handle them alike."""
    done = 0
    with _as_urllib3_errors():
        while done < len(view):
            count = raw.readinto(view[done:])
            if not count:
                raise ProtocolError(f"the reply ended after {done} of {len(view)} bytes")
            done += count


@contextlib.contextmanager
def _as_urllib3_errors() -> Iterator[None]:
    """Report the standard library's read errors as urllib3 does (callers handle both
    alike): a timeout as ReadTimeoutError, a broken connection as ProtocolError."""
    try:
        yield
    except TimeoutError as exc:
        raise ReadTimeoutError(None, "", f"read timed out ({exc})") from exc
    except OSError as exc:
        raise ProtocolError(f"the connection broke while reading the reply ({exc})") from exc


def new_pool(url: str, ca: str | None) -> urllib3.PoolManager:
    """A pool for the gateway at ``url``, through the environment's proxy if one applies.

    An https gateway's certificate and host name are checked against ``ca``, else the
    bundle in ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else the system's CAs.
    """
    parsed = urllib3.util.parse_url(url)
    options: dict[str, Any] = {"maxsize": 1}
    if parsed.scheme == "https":
        bundle = ca or next(
            (os.environ[name] for name in _CA_BUNDLE_VARIABLES if os.environ.get(name)), None
        )
        options.update(cert_reqs="CERT_REQUIRED", ca_certs=bundle)
    proxy = urllib.request.getproxies().get(parsed.scheme or "http")
    if proxy and not urllib.request.proxy_bypass(parsed.host or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _retry_after(reply: Reply) -> float:
    try:
        return min(60.0, max(0.1, float(reply.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _api_error(reply: Reply) -> ApiError:
    try:
        body = reply.json()
        error, message = body.get("error", "error"), body.get("message", "")
        return ApiError(reply.status, error, message, reply.headers)
    except (ValueError, AttributeError):
        text = reply.content[:500].decode("utf-8", "replace")
        return ApiError(reply.status, "http_error", text)
