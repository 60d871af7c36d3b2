"""A ``compute`` call interrupted (Ctrl-C) cancels its job: nothing else holds it.

The caller never got a :class:`~client_sdk.job.Job` for it, so the job would otherwise
run to its end on a worker that others are waiting for. When the interrupt came before
the gateway's answer, the job is found by the ``Idempotency-Key`` of the request.
"""

from __future__ import annotations

import time

from client_sdk import transport
from client_sdk.errors import ComputeThisError
from client_sdk.job import Job

LOOKUP_FOR = 1.0  # seconds to look for the job of a request whose answer never came
CANCEL_TIMEOUT = 5.0  # seconds for each request of the clean-up
RETRY_FOR = 1.0  # seconds of connection errors ridden out by each request


def cancel_abandoned(job_id: str | None, key: str | None = None) -> None:
    """Cancel the job of a call its caller gave up on, by id or by the Idempotency-Key of
    the request that created it.

    Best effort, within seconds: a job that is not found (the request never reached the
    gateway, or its body was cut short) or a gateway that does not answer is left as it
    is, and another Ctrl-C stops the attempt.
    """
    try:
        if job_id is None and key is not None:
            job_id = _job_with_key(key)
        if job_id is not None:
            Job(job_id).cancel(timeout=CANCEL_TIMEOUT, retry_for=RETRY_FOR)
    except ComputeThisError:
        pass


def _job_with_key(key: str) -> str | None:
    """The id of the caller's job created with ``key``; the gateway may still be
    storing it when the interrupt comes, so it is asked again for ``LOOKUP_FOR`` s."""
    deadline = time.monotonic() + LOOKUP_FOR
    while True:
        listing = transport.request(
            "GET",
            "/jobs",
            params={"idempotency_key": key},
            timeout=CANCEL_TIMEOUT,
            retry_for=RETRY_FOR,
        ).json()
        if listing["jobs"]:
            return listing["jobs"][0]["id"]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
