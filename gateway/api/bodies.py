"""Reading request bodies within their limits: one call, a batch of calls, job ids.

Call bodies are dill bytes the gateway stores without unpickling; it only checks that
each is one complete pickle of a 3-tuple (:mod:`gateway.payload`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from flask import request

from gateway.api.errors import ApiError
from gateway.config import SMALL_BODY
from gateway.payload import InvalidPayload, check_call_payload
from gateway.services import services
from gateway.store import IncompleteBody, JobStore, PayloadTooLarge, StagedPayload
from gateway.store.bundles import BundleMismatch, Bundles
from wire import batch_body, limits
from wire.bundle import BundleError
from wire.http import JOBS_PATH, PAYLOAD_MEDIA_TYPE

BATCH_FORMAT = "send each call's dill bytes after its length as 8 bytes, big-endian"
_READ_BLOCK = 1 << 20  # bytes of a body read at a time


def require_payload_type() -> None:
    """415 unless the body is sent as call payload bytes."""
    if request.mimetype != PAYLOAD_MEDIA_TYPE:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the dill bytes of (func, args, kwargs) with Content-Type: {PAYLOAD_MEDIA_TYPE}",
        )


@contextmanager
def arriving() -> Iterator[None]:
    """408 when the body stops arriving: a read timed out (the HTTP server's deadline for
    a small body, or its idle timeout for a large one); the connection closes after."""
    try:
        yield
    except TimeoutError:
        timeout = services().config.header_timeout
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive in time: a body up to {SMALL_BODY} bytes must "
            f"come with its headers within {timeout:g} s, a larger one must keep coming; "
            "send it at once",
            {"Connection": "close"},
        ) from None


def too_large(limit: int) -> ApiError:
    """413: the body is over ``limit`` bytes."""
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")


def stage_call(store: JobStore, max_body: int) -> StagedPayload:
    """The body of ``POST /jobs``, staged in the store and checked to be one call."""
    length = request.content_length
    if length is not None and length > max_body:
        raise too_large(max_body)
    try:
        with arriving():
            staged = store.stage_payload(body_stream(length), max_body, length)
    except PayloadTooLarge:
        raise too_large(max_body) from None
    except IncompleteBody as exc:
        raise ApiError(400, "incomplete_body", f"{exc}; send the whole body") from None
    try:
        if staged.size == 0:
            raise InvalidPayload("the body is empty; send dill.dumps((func, args, kwargs))")
        check_call_payload(staged.view())
    except InvalidPayload as exc:
        store.discard(staged)
        raise ApiError(400, "invalid_payload", str(exc)) from None
    return staged


def batch_calls(max_body: int) -> list[bytes]:
    """The calls of a ``POST /batches`` body (:mod:`wire.batch_body`), each checked like
    a single call's body; 4xx if any is not a call, or is too large."""
    body = _read_body(min(max_body, limits.MAX_BATCH_BYTES))
    try:
        views = batch_body.decode(body, limits.MAX_CALLS)
    except batch_body.InvalidBatch as exc:
        raise ApiError(400, "invalid_batch", f"{exc}; {BATCH_FORMAT}") from None
    if not views:
        raise ApiError(400, "invalid_batch", f"the batch holds no calls; {BATCH_FORMAT}")
    for index, view in enumerate(views):
        if len(view) > limits.MAX_CALL_BYTES:
            raise ApiError(
                413,
                "call_too_large",
                f"call {index} is {len(view)} bytes; a batch holds calls of up to "
                f"{limits.MAX_CALL_BYTES} bytes: post larger ones alone to {JOBS_PATH}",
            )
        try:
            if not len(view):
                raise InvalidPayload("it is empty; send dill.dumps((func, args, kwargs))")
            check_call_payload(view)
        except InvalidPayload as exc:
            raise ApiError(400, "invalid_payload", f"call {index}: {exc}") from None
    return [bytes(view) for view in views]


def requested_job_ids() -> list[str]:
    """The ``jobs`` list of a JSON body (400 unless it is 1 to ``MAX_JOBS`` job ids)."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            'send {"jobs": [job ids]} with Content-Type: application/json',
        )
    with arriving():
        body = request.get_json(silent=True)
    job_ids = body.get("jobs") if isinstance(body, dict) else None
    if (
        not isinstance(job_ids, list)
        or not 1 <= len(job_ids) <= limits.MAX_JOBS
        or not all(isinstance(job_id, str) for job_id in job_ids)
    ):
        raise ApiError(
            400,
            "invalid_body",
            f'send {{"jobs": [job ids]}}: a JSON object whose "jobs" is a list of 1 to '
            f"{limits.MAX_JOBS} job ids",
        )
    return job_ids


def body_stream(length: int | None) -> IO[bytes]:
    """The request body: the server's own input when the Content-Length is known.

    Readers take no more than ``length`` from it. werkzeug's ``request.stream``
    wrapper copies every block twice more: ~0.5 s of a 256 MB upload here, against
    ~0.1-0.3 s read directly. A chunked body goes through the wrapper.
    """
    return request.environ["wsgi.input"] if length is not None else request.stream


def _read_body(limit: int) -> bytes:
    """The whole request body, at most ``limit`` bytes (413 past it, 400 if cut short)."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    stream = body_stream(length)
    parts = []
    size = 0
    while length is None or size < length:
        with arriving():
            part = stream.read(_READ_BLOCK if length is None else min(_READ_BLOCK, length - size))
        if not part:
            if length is not None:
                raise ApiError(
                    400,
                    "incomplete_body",
                    f"the body ended after {size} of {length} bytes; send the whole body",
                )
            break
        size += len(part)
        if size > limit:
            raise too_large(limit)
        parts.append(part)
    return b"".join(parts)


def receive_content(
    files: Bundles,
    tenant: str,
    digest: str,
    media_type: str,
    media_hint: str,
    too_large_error: Callable[[int, int | None], ApiError],
) -> int:
    """Keep the request's body for ``tenant`` in ``files`` (a store of content named by
    its SHA-256: bundles, artifacts) under ``digest``; its size. 415 unless sent as
    ``media_type`` (``media_hint`` says how), ``too_large_error(limit, size)`` past the
    gateway's ``--max-bundle``, 400 for a body cut short, of another SHA-256
    (``<what>_digest_mismatch``) or refused by the store's check (``invalid_<what>``)."""
    if request.mimetype != media_type:
        raise ApiError(
            415, "unsupported_media_type", f"send {media_hint} with Content-Type: {media_type}"
        )
    limit = services().config.max_bundle
    length = request.content_length
    if length is not None and length > limit:
        raise too_large_error(limit, length)
    try:
        with arriving():
            return files.receive(tenant, digest, body_stream(length), length, limit)
    except PayloadTooLarge:
        raise too_large_error(limit, None) from None
    except IncompleteBody as exc:
        raise ApiError(400, "incomplete_body", f"{exc}; send the whole {files.WHAT}") from None
    except BundleMismatch as exc:
        raise ApiError(400, f"{files.WHAT}_digest_mismatch", str(exc)) from None
    except BundleError as exc:
        raise ApiError(400, f"invalid_{files.WHAT}", str(exc)) from None
