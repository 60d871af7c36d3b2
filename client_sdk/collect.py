"""Wait for many jobs over one connection: :func:`as_completed` and :func:`gather`.

Both post the job ids to ``POST /results``, which streams each job's outcome as soon
as the job is done (see :mod:`client_sdk.outcomes`), instead of one long-poll request
per job. Jobs of several clients (gateways) are collected from each at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from client_sdk import outcomes
from client_sdk.client import Client
from client_sdk.job import Job


def as_completed(jobs: Iterable[Job], timeout: float | None = None) -> Iterator[Job]:
    """Yield each job as soon as it is done (finished, failed or cancelled), in the
    order they finish; ``job.result()`` then answers without another request.

    A job listed twice is yielded once. With ``timeout`` (seconds), raises
    :class:`~client_sdk.errors.ResultTimeout` if some jobs are not done in time; they
    keep running.
    """
    by_client: dict[Client, dict[str, list[Job]]] = {}
    for job in jobs:
        by_client.setdefault(job.client, {}).setdefault(job.id, []).append(job)
    if len(by_client) > 1:
        yield from _from_each_client(by_client, timeout)
        return
    for client, waiting in by_client.items():  # one client, or none
        for same, info, result in outcomes.collect(client.transport, waiting, timeout):
            yield _outcome_to(same, info, result)


def gather(
    jobs: Iterable[Job], *, return_exceptions: bool = False, timeout: float | None = None
) -> list[Any]:
    """The results of ``jobs``, in their order, once all are done.

    A job's error is raised as soon as it is known (the other jobs keep running);
    with ``return_exceptions=True`` the exception object takes its result's place.
    With ``timeout`` (seconds), raises :class:`~client_sdk.errors.ResultTimeout` if
    some jobs are not done in time; they keep running.
    """
    jobs = list(jobs)
    values: dict[str, Any] = {}
    for job in as_completed(jobs, timeout):
        try:
            values[job.id] = job.result()  # answered from the stream, unpickled once
        except Exception as exc:
            if not return_exceptions:
                raise
            values[job.id] = exc
    return [values[job.id] for job in jobs]


def _outcome_to(same: list[Job], info: dict[str, Any], result: bytes | memoryview) -> Job:
    """Give the jobs of one id their outcome; the first of them."""
    for job in same:
        job._outcome = (info, result)
    return same[0]


def _from_each_client(
    by_client: dict[Client, dict[str, list[Job]]], timeout: float | None
) -> Iterator[Job]:
    """:func:`as_completed` over several gateways: a daemon thread reads each one's
    stream; their jobs are yielded as they arrive. Left early, the threads end with
    their next outcome (or their stream, within ``POLL_WAIT``)."""
    arrived: queue.Queue[tuple[Job | None, BaseException | None]] = queue.Queue()
    stop = threading.Event()

    def read(client: Client, waiting: dict[str, list[Job]]) -> None:
        try:
            for same, info, result in outcomes.collect(client.transport, waiting, timeout):
                arrived.put((_outcome_to(same, info, result), None))
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
            arrived.put((None, exc))
            return
        arrived.put((None, None))  # this client's jobs are all done

    for client, waiting in by_client.items():
        name = "computethis-collect"
        threading.Thread(target=read, args=(client, waiting), name=name, daemon=True).start()
    reading = len(by_client)
    try:
        while reading:
            job, error = arrived.get()
            if error is not None:
                raise error
            if job is None:
                reading -= 1
            else:
                yield job
    finally:
        stop.set()
