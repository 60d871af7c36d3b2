"""HTTP to the gateway: one pooled session per thread, JSON errors, retries with backoff."""

from __future__ import annotations

import platform
import random
import threading
import time
from typing import Any

import dill
import requests
import urllib3

from client_sdk.config import Settings, settings
from client_sdk.errors import ApiError, GatewayUnreachable, UntrustedCertificate
from client_sdk.pickling import Pickled

API = "/api/v1"
RETRY_FOR = 60.0  # seconds of connection errors ridden out before giving up
BUSY_RETRY_FOR = 600.0  # seconds of 429 (too many queued jobs) waited out before giving up
HEADERS = {
    "X-Computethis-Python": platform.python_version(),
    "X-Computethis-Dill": dill.__version__,
}

_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers.update(HEADERS)
        _local.session = session
    return session


def request(
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    data: bytes | Pickled | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    config: Settings | None = None,
) -> requests.Response:
    """Send a request, retrying connection errors with backoff for up to ``RETRY_FOR`` s.

    A POST is only retried when it carries an ``Idempotency-Key`` (the gateway then
    answers a repeat with the job it already created). Error statuses raise ApiError.
    """
    config = config or settings()
    all_headers = dict(headers or {})
    if config.token:
        all_headers["Authorization"] = f"Bearer {config.token}"
    retry = method != "POST" or "Idempotency-Key" in all_headers
    deadline = time.monotonic() + RETRY_FOR
    busy_deadline = time.monotonic() + BUSY_RETRY_FOR
    delay = 0.05
    while True:
        try:
            response = _session().request(
                method,
                f"{config.url}{API}{path}",
                params=params,
                data=data,
                headers=all_headers,
                timeout=timeout,
                verify=config.ca or True,
                stream=True,
            )
            _read_body(response)
        except requests.exceptions.SSLError as exc:
            # Not a passing fault: retrying would fail the same way.
            raise UntrustedCertificate(
                f"the gateway at {config.url} failed the TLS check ({exc}); if it uses a "
                "private CA, point COMPUTETHIS_CA at that CA's PEM file"
            ) from exc
        except (
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError,
        ) as exc:
            # Refused, reset, or cut off mid-reply (the gateway died): safe to repeat,
            # since GETs are idempotent and POSTs carry an Idempotency-Key.
            if not retry or time.monotonic() + delay > deadline:
                raise GatewayUnreachable(
                    f"cannot reach the computethis gateway at {config.url} ({exc}); "
                    "is `computethis up` running, and is COMPUTETHIS_URL right?"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
            continue
        if response.status_code == 429 and time.monotonic() < busy_deadline:
            # Too many queued jobs: wait as the gateway asks, then try again.
            time.sleep(_retry_after(response) * (0.5 + random.random()))
            continue
        if response.status_code >= 400:
            raise _api_error(response)
        return response


def _read_body(response: requests.Response) -> None:
    """Read the whole body in one call and hand it to ``response.content``.

    requests would read it 10 KiB at a time, which costs seconds on a large result.
    """
    try:
        body = response.raw.read(decode_content=True)
    except BaseException:
        response.close()  # the connection is in an unknown state: drop it
        raise
    response._content = body  # what requests' own .content would have stored
    response._content_consumed = True
    response.close()  # now only returns the connection to the pool


def _retry_after(response: requests.Response) -> float:
    try:
        return min(60.0, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _api_error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(response.status_code, body.get("error", "error"), body.get("message", ""))
    except ValueError:
        return ApiError(response.status_code, "http_error", response.text[:500])
