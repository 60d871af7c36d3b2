"""``RemoteFunction.submit_many``: one job per item, in few requests.

Calls are pickled one by one and posted in slices: each slice is one batch body (see
:mod:`wire.batch_body`) to ``POST /batches``, up to ``MAX_CALLS`` calls or
``MAX_BATCH_BYTES``. A call too large for a batch body is posted on its own to
``POST /jobs``. A slice the gateway finds too large (a ``--max-body`` below
``MAX_BATCH_BYTES``, or more calls than its ``--max-queued``) is posted again in halves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from client_sdk.errors import ApiError
from client_sdk.serialization import PickledFunction, dumps_call
from client_sdk.transport import Transport
from wire import batch_body, limits

JobInfo = dict[str, Any]  # a job's JSON record, as the gateway answered it


def submit_many(
    transport: Transport,
    func: Callable[..., Any],
    items: Iterable[Any],
    *,
    params: dict[str, Any],
    check_arguments: Callable[[tuple, dict], None],
) -> list[JobInfo]:
    """Queue ``func(item)`` for each item, with the job options ``params``; the jobs'
    records in input order. Each call is checked with ``check_arguments`` (which raises
    ``TypeError``) as its item is read.

    If a request fails, the jobs that earlier ones queued keep running: the exception's
    notes give their ids (``Job.from_id`` reattaches to them).
    """
    jobs: list[JobInfo] = []
    try:
        _submit_all(transport, func, items, params, check_arguments, jobs)
    except Exception as exc:
        if jobs:
            exc.add_note(
                f"{len(jobs)} of the items were already queued as jobs (in input order): "
                + ", ".join(job["id"] for job in jobs)
            )
        raise
    return jobs


def _submit_all(
    transport: Transport,
    func: Callable[..., Any],
    items: Iterable[Any],
    params: dict[str, Any],
    check_arguments: Callable[[tuple, dict], None],
    jobs: list[JobInfo],
) -> None:
    """Queue the items' jobs, appending each one's record to ``jobs`` once it is queued."""
    pending: list[bytes] = []
    pending_bytes = 0
    pickled_func = PickledFunction(func)
    for item in items:
        check_arguments((item,), {})
        payload = dumps_call(pickled_func, (item,), {})
        if not isinstance(payload, bytes) or len(payload) > limits.MAX_CALL_BYTES:
            post_slice(transport, params, pending, jobs)
            pending, pending_bytes = [], 0
            jobs.append(transport.post_call("/jobs", payload, params).json())
            continue
        size = batch_body.LENGTH_BYTES + len(payload)
        if len(pending) == limits.MAX_CALLS or pending_bytes + size > limits.MAX_BATCH_BYTES:
            post_slice(transport, params, pending, jobs)
            pending, pending_bytes = [], 0
        pending.append(payload)
        pending_bytes += size
    post_slice(transport, params, pending, jobs)


def post_slice(
    transport: Transport, params: dict[str, Any], payloads: list[bytes], jobs: list[JobInfo]
) -> None:
    """Post pickled calls as one batch body (in halves if it is too large), appending
    their jobs' records to ``jobs``."""
    if not payloads:
        return
    try:
        body = batch_body.encode(payloads)
        reply = transport.post_call("/batches", body, params, timeout=60)
    except ApiError as exc:
        if exc.status != 413 or len(payloads) == 1:
            raise
        half = len(payloads) // 2
        post_slice(transport, params, payloads[:half], jobs)
        post_slice(transport, params, payloads[half:], jobs)
        return
    jobs.extend(reply.json()["jobs"])
