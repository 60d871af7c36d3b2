"""Reading jobs' outcomes from a gateway, by job id: what a :class:`~client_sdk.job.Job`,
the coalescer and ``as_completed`` all use.

A job's outcome is its JSON record and, if it finished, its result bytes. One job's
outcome is long-polled (``GET /jobs/<id>/result?wait``); many jobs' outcomes stream
from ``POST /results`` as the jobs end, one frame each (see
:mod:`wire.outcome_frames`). :func:`outcome_value` turns an outcome into the result,
or raises the job's error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from client_sdk.errors import ApiError, GatewayUnreachable, JobCancelled, ResultTimeout
from client_sdk.serialization import loads_result, rebuild_exception
from client_sdk.transport import Backoff, Reply, Transport
from wire.limits import MAX_JOBS
from wire.outcome_frames import HEADER_BYTES, read_lengths

POLL_WAIT = 30.0  # seconds per long-poll request
Frame = tuple[dict[str, Any], bytes | memoryview]  # a job's JSON and its result bytes
Waiter = TypeVar("Waiter")  # whatever waits for a job's outcome (a Job, a queued call)
_ABSENT: Any = object()


def outcome_value(job_id: str, info: dict[str, Any], result: bytes | memoryview = b"") -> Any:
    """The result of a done job from its JSON and result bytes, or raise its error."""
    refusal = info.get("refusal")
    if refusal:
        raise ApiError(refusal["status"], refusal["error"], refusal["message"])
    if info.get("status") == "cancelled":
        raise JobCancelled(f"job {job_id} was cancelled")
    if info.get("status") == "failed":
        raise rebuild_exception(info)
    return loads_result(result)


def read_outcome(job_id: str, response: Reply) -> tuple[bool, Any]:
    """``(True, result)`` if the response carries the job's result; raises the job's
    error if it failed or was cancelled; ``(False, None)`` if it is not done yet."""
    if response.headers.get("Content-Type", "").startswith("application/octet-stream"):
        return True, loads_result(response.content)
    body = response.json()
    if body.get("status") in ("cancelled", "failed"):
        outcome_value(job_id, body)  # raises the job's error
    return False, None


def wait_for_result(transport: Transport, job_id: str, timeout: float | None = None) -> Any:
    """Long-poll the job until it is done; its result, or raise its error.

    With ``timeout``, raises :class:`ResultTimeout` if the job is not done in time.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = (
            POLL_WAIT if deadline is None else max(0.0, min(POLL_WAIT, deadline - time.monotonic()))
        )
        response = transport.request(
            "GET", f"/jobs/{job_id}/result", params={"wait": f"{wait:.3f}"}, timeout=wait + 30
        )
        done, value = read_outcome(job_id, response)
        if done:
            return value
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout(f"job {job_id} not done after {timeout} s; it keeps running")


def read_frames(reply: Reply) -> Iterator[Frame]:
    """Each frame of a streamed outcomes answer: the job's JSON and its result bytes."""
    while not reply.at_end():
        json_bytes, result_bytes = read_lengths(reply.read_exactly(HEADER_BYTES))
        info = json.loads(reply.read_exactly(json_bytes))
        yield info, reply.read_exactly(result_bytes) if result_bytes else b""


def match_frames(
    waiting: dict[str, Waiter], frames: Iterable[Frame]
) -> Iterator[tuple[Waiter, dict[str, Any], bytes | memoryview]]:
    """For each frame of a job in ``waiting`` (by id): remove the job and yield what
    waited for it with the frame's JSON and result bytes. Other frames are skipped."""
    for info, result in frames:
        waiter = waiting.pop(info.get("id"), _ABSENT)  # type: ignore[arg-type]
        if waiter is not _ABSENT:
            yield waiter, info, result  # type: ignore[misc]


def collect(
    transport: Transport, waiting: dict[str, Waiter], timeout: float | None = None
) -> Iterator[tuple[Waiter, dict[str, Any], bytes | memoryview]]:
    """Stream the outcomes of the jobs in ``waiting`` (by id) as they end, in that
    order, as :func:`match_frames` does, over as few ``POST /results`` as the gateway
    needs (``MAX_JOBS`` ids each).

    A cut stream (the gateway restarting?) is asked for again, with backoff. With
    ``timeout`` (seconds), raises :class:`ResultTimeout` if some jobs are not done in
    time; they keep running.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff: Backoff | None = None  # since the stream was first cut, in a row
    while waiting:
        wait = POLL_WAIT if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            yield from _collect_once(transport, waiting, min(wait, POLL_WAIT))
            backoff = None
        except ProtocolError as exc:  # the stream was cut (the gateway restarting?)
            backoff = backoff or Backoff()
            if not backoff.pause():
                raise GatewayUnreachable(
                    f"the computethis gateway at {transport.settings.url} keeps cutting the "
                    f"stream of results ({exc}); check that it is running"
                ) from exc
        if waiting and deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout(
                f"{len(waiting)} of the jobs were not done after {timeout} s "
                f"(first: {next(iter(waiting))}); they keep running"
            )


def _collect_once(
    transport: Transport, waiting: dict[str, Waiter], wait: float
) -> Iterator[tuple[Waiter, dict[str, Any], bytes | memoryview]]:
    """One ``POST /results`` for up to MAX_JOBS waiting jobs, until the gateway ends
    the stream."""
    ids = list(islice(waiting, MAX_JOBS))
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
        yield from match_frames(waiting, read_frames(reply))
        finished = True
    except ReadTimeoutError as exc:
        raise GatewayUnreachable(
            f"the computethis gateway at {transport.settings.url} stopped sending results "
            f"for {wait + 30:g} s; check that it is running and not overloaded"
        ) from exc
    finally:
        reply.close(finished)
