"""Wait for many jobs over one connection: :func:`as_completed` and :func:`gather`.

Both post the job ids to ``POST /results``, which streams each job's outcome as soon
as the job is done (see :mod:`wire.outcome_frames`), instead of one long-poll
request per job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from client_sdk import transport
from client_sdk.config import settings
from client_sdk.errors import GatewayUnreachable, ResultTimeout
from client_sdk.job import POLL_WAIT, Job
from wire.limits import MAX_JOBS
from wire.outcome_frames import HEADER_BYTES, read_lengths


def as_completed(jobs: Iterable[Job], timeout: float | None = None) -> Iterator[Job]:
    """Yield each job as soon as it is done (finished, failed or cancelled), in the
    order they finish; ``job.result()`` then answers without another request.

    A job listed twice is yielded once. With ``timeout`` (seconds), raises
    :class:`ResultTimeout` if some jobs are not done in time; they keep running.
    """
    pending: dict[str, list[Job]] = {}
    for job in jobs:
        pending.setdefault(job.id, []).append(job)
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff: transport.Backoff | None = None  # since the stream was first cut, in a row
    while pending:
        wait = POLL_WAIT if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            yield from _collect(pending, min(wait, POLL_WAIT))
            backoff = None
        except ProtocolError as exc:  # the stream was cut (the gateway restarting?)
            backoff = backoff or transport.Backoff()
            if not backoff.pause():
                raise GatewayUnreachable(
                    f"the computethis gateway at {settings().url} keeps cutting the stream "
                    f"of results ({exc}); check that it is running"
                ) from exc
        if pending and deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout(
                f"{len(pending)} of the jobs were not done after {timeout} s "
                f"(first: {next(iter(pending))}); they keep running"
            )


def gather(
    jobs: Iterable[Job], *, return_exceptions: bool = False, timeout: float | None = None
) -> list[Any]:
    """The results of ``jobs``, in their order, once all are done.

    A job's error is raised as soon as it is known (the other jobs keep running);
    with ``return_exceptions=True`` the exception object takes its result's place.
    With ``timeout`` (seconds), raises :class:`ResultTimeout` if some jobs are not
    done in time; they keep running.
    """
    jobs = list(jobs)
    outcomes: dict[str, Any] = {}
    for job in as_completed(jobs, timeout):
        try:
            outcomes[job.id] = job.result()  # answered from the stream, unpickled once
        except Exception as exc:
            if not return_exceptions:
                raise
            outcomes[job.id] = exc
    return [outcomes[job.id] for job in jobs]


def _collect(pending: dict[str, list[Job]], wait: float) -> Iterator[Job]:
    """One ``POST /results`` for up to MAX_JOBS pending jobs: yield each job whose
    outcome arrives (removing it from ``pending``) until the gateway ends the stream."""
    ids = list(islice(pending, MAX_JOBS))
    reply = transport.request(
        "POST",
        "/results",
        params={"wait": f"{wait:.3f}"},
        json_body={"jobs": ids},
        timeout=wait + 30,
        stream=True,
        safe=True,
    )
    finished = False
    try:
        yield from outcomes_into(pending, read_frames(reply))
        finished = True
    except ReadTimeoutError as exc:
        raise GatewayUnreachable(
            f"the computethis gateway at {settings().url} stopped sending results for "
            f"{wait + 30:g} s; check that it is running and not overloaded"
        ) from exc
    finally:
        reply.close(finished)


def outcomes_into(
    pending: dict[str, list[Job]], frames: Iterable[tuple[dict[str, Any], bytes | memoryview]]
) -> Iterator[Job]:
    """Give each pending job its outcome from ``frames`` (removing it from ``pending``),
    so that its ``result()`` needs no request; yield the first job of each id as its
    outcome arrives."""
    for info, result in frames:
        same = pending.pop(info.get("id"), None)
        if same:
            for job in same:
                job._outcome = (info, result)
            yield same[0]


def read_frames(reply: transport.Reply) -> Iterator[tuple[dict[str, Any], bytes | memoryview]]:
    """Each frame of a streamed outcomes answer: the job's JSON and its result bytes."""
    while not reply.at_end():
        json_bytes, result_bytes = read_lengths(reply.read_exactly(HEADER_BYTES))
        info = json.loads(reply.read_exactly(json_bytes))
        yield info, reply.read_exactly(result_bytes) if result_bytes else b""
