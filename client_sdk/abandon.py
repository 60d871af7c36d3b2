"""Jobs whose caller gave up (Ctrl-C) are cancelled: nothing else holds them.

The caller never got a :class:`~client_sdk.job.Job` for them, so they would otherwise
run to their end on workers that others are waiting for. :class:`AbandonableJobs`
records the jobs one caller waits for (a queued ``compute`` call's, a ``map``'s chunk
jobs), including those whose id is only learned after the caller gave up;
:func:`cancel_abandoned` cancels one. When the interrupt came before the gateway's
answer, the job is found by the ``Idempotency-Key`` of the request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from client_sdk.errors import ComputeThisError
from client_sdk.transport import Transport

LOOKUP_FOR = 1.0  # seconds to look for the job of a request whose answer never came
CANCEL_TIMEOUT = 5.0  # seconds for each request of the clean-up
RETRY_FOR = 1.0  # seconds of connection errors ridden out by each request


class AbandonableJobs:
    """The jobs one caller waits for, to be cancelled if it gives up.

    Each job is recorded once created (:meth:`created`) and forgotten once collected
    (:meth:`collected`). :meth:`abandon` cancels those recorded, and any recorded later
    (a job whose id the gateway had not told yet). No lock: ``set`` operations are
    atomic, and of a job created while its caller gives up, at least one side sees the
    other's change and exactly one of them removes the id to cancel it.
    """

    __slots__ = ("_ids", "_transport")

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._transport: Transport | None = None  # set once abandoned

    def created(self, job_id: str) -> None:
        """Record a job of the caller's; cancel it at once if the caller gave up."""
        self._ids.add(job_id)
        if self._transport is not None:
            self._cancel(job_id, self._transport)

    def collected(self, job_ids: Iterable[str]) -> None:
        """Forget jobs whose outcome the caller has: nothing to cancel any more."""
        self._ids.difference_update(job_ids)

    def abandon(self, transport: Transport) -> None:
        """The caller gave up: cancel its jobs, through ``transport``, now and as they
        are recorded from now on."""
        self._transport = transport
        for job_id in list(self._ids):
            self._cancel(job_id, transport)

    def _cancel(self, job_id: str, transport: Transport) -> None:
        try:
            self._ids.remove(job_id)  # whoever removes it cancels it, once
        except KeyError:
            return
        cancel_abandoned(transport, job_id)


def cancel_abandoned(transport: Transport, job_id: str | None, key: str | None = None) -> None:
    """Cancel the job of a call its caller gave up on, by id or by the Idempotency-Key of
    the request that created it.

    Best effort, within seconds: a job that is not found (the request never reached the
    gateway, or its body was cut short) or a gateway that does not answer is left as it
    is, and another Ctrl-C stops the attempt.
    """
    try:
        if job_id is None and key is not None:
            job_id = _job_with_key(transport, key)
        if job_id is not None:
            transport.request(
                "POST", f"/jobs/{job_id}/cancel", timeout=CANCEL_TIMEOUT, retry_for=RETRY_FOR
            )
    except ComputeThisError:
        pass


def _job_with_key(transport: Transport, key: str) -> str | None:
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
