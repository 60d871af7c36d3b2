"""``RemoteFunction.submit_many``: one job per item, posted a batch at a time.

Calls are pickled one by one and sent to ``POST /batches`` (see
:mod:`wire.batch_body`) up to ``MAX_CALLS`` calls or ``MAX_BYTES`` per request.
A call too large for a batch is posted on its own to ``POST /jobs``. A batch the
gateway finds too large (a ``--max-body`` below ``MAX_BYTES``, or more calls than its
``--max-queued``) is sent again in halves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from client_sdk import transport
from client_sdk.errors import ApiError
from client_sdk.job import Job
from client_sdk.serialization import PickledFunction, dumps_call
from wire import batch_body, limits

if TYPE_CHECKING:
    from client_sdk.decorator import RemoteFunction


def submit_many(function: RemoteFunction, items: Iterable[Any]) -> list[Job]:
    """Queue ``function(item)`` for each item; the jobs in input order.

    If a request fails, the jobs that earlier ones queued keep running: the exception's
    notes give their ids (``Job.from_id`` reattaches to them).
    """
    jobs: list[Job] = []
    try:
        _submit_all(function, items, jobs)
    except Exception as exc:
        if jobs:
            exc.add_note(
                f"{len(jobs)} of the items were already queued as jobs (in input order): "
                + ", ".join(job.id for job in jobs)
            )
        raise
    return jobs


def _submit_all(function: RemoteFunction, items: Iterable[Any], jobs: list[Job]) -> None:
    """Queue the items' jobs, appending each to ``jobs`` once it is queued."""
    pending: list[bytes] = []
    pending_bytes = 0
    func = PickledFunction(function.func)
    for item in items:
        call = function(item)  # checks the argument against the signature
        payload = dumps_call(func, call.args, call.kwargs)
        if not isinstance(payload, bytes) or len(payload) > limits.MAX_CALL_BYTES:
            post_batch(function, pending, jobs)
            pending, pending_bytes = [], 0
            info = transport.post_call("/jobs", payload, function.options()).json()
            jobs.append(Job(info["id"], info))
            continue
        size = batch_body.LENGTH_BYTES + len(payload)
        if len(pending) == limits.MAX_CALLS or pending_bytes + size > limits.MAX_BATCH_BYTES:
            post_batch(function, pending, jobs)
            pending, pending_bytes = [], 0
        pending.append(payload)
        pending_bytes += size
    post_batch(function, pending, jobs)


def post_batch(function: RemoteFunction, payloads: list[bytes], jobs: list[Job]) -> None:
    """Post pickled calls of ``function`` as one batch (in halves if it is too large),
    appending their jobs to ``jobs``."""
    if not payloads:
        return
    try:
        body = batch_body.encode(payloads)
        reply = transport.post_call("/batches", body, function.options(), timeout=60)
    except ApiError as exc:
        if exc.status != 413 or len(payloads) == 1:
            raise
        half = len(payloads) // 2
        post_batch(function, payloads[:half], jobs)
        post_batch(function, payloads[half:], jobs)
        return
    jobs.extend(Job(info["id"], info) for info in reply.json()["jobs"])
