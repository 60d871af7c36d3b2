"""``RemoteFunction.submit_many``: one job per item, posted a batch at a time.

Calls are pickled one by one and sent to ``POST /batches`` (see
:mod:`client_sdk.batch_body`) up to ``MAX_CALLS`` calls or ``MAX_BYTES`` per request.
A call too large for a batch is posted on its own to ``POST /jobs``. A batch the
gateway finds too large (a ``--max-body`` below ``MAX_BYTES``) is sent again in halves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from client_sdk import batch_body, transport
from client_sdk.errors import ApiError
from client_sdk.job import Job
from client_sdk.serialization import PickledFunction, dumps_call

if TYPE_CHECKING:
    from client_sdk.decorator import RemoteFunction


def submit_many(function: RemoteFunction, items: Iterable[Any]) -> list[Job]:
    """Queue ``function(item)`` for each item; the jobs in input order."""
    jobs: list[Job] = []
    pending: list[bytes] = []
    pending_bytes = 0
    func = PickledFunction(function.func)
    for item in items:
        call = function(item)  # checks the argument against the signature
        payload = dumps_call(func, call.args, call.kwargs)
        if not isinstance(payload, bytes) or len(payload) > batch_body.MAX_CALL_BYTES:
            jobs.extend(post_batch(function, pending))
            pending, pending_bytes = [], 0
            info = function.post_payload(payload).json()
            jobs.append(Job(info["id"], info))
            continue
        size = batch_body.LENGTH_BYTES + len(payload)
        if len(pending) == batch_body.MAX_CALLS or pending_bytes + size > batch_body.MAX_BYTES:
            jobs.extend(post_batch(function, pending))
            pending, pending_bytes = [], 0
        pending.append(payload)
        pending_bytes += size
    jobs.extend(post_batch(function, pending))
    return jobs


def post_batch(function: RemoteFunction, payloads: list[bytes]) -> list[Job]:
    """Post pickled calls of ``function`` as one batch (in halves if it is too large)."""
    if not payloads:
        return []
    try:
        reply = transport.request(
            "POST",
            "/batches",
            params=function.options(),
            data=batch_body.encode(payloads),
            headers={
                "Content-Type": "application/octet-stream",
                "Idempotency-Key": uuid.uuid4().hex,
            },
            timeout=60,
        )
    except ApiError as exc:
        if exc.status != 413 or len(payloads) == 1:
            raise
        half = len(payloads) // 2
        return post_batch(function, payloads[:half]) + post_batch(function, payloads[half:])
    return [Job(info["id"], info) for info in reply.json()["jobs"]]
