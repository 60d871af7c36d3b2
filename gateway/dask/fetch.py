"""Fetching outcomes from Dask, and turning what Dask hands back into store Outcomes.

A worker sends a small job's envelope (:mod:`wire.envelope`) inside its outcome event;
a larger one, and a failure the scheduler announced, is fetched here: a small pool of
threads attaches to the finished tasks, gathers their results (envelopes) or
exceptions, and hands the :class:`~gateway.store.Outcome` of each to the recorder. A
result stuck on an unreachable worker delays only its own fetch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from distributed import Client, Future

from gateway.dask.link import RPC_CHUNK, DaskLink, dask_key, job_id_of
from gateway.dask.tracker import JobTracker
from gateway.store import JobStore, Outcome
from wire.envelope import unpack
from wire.errors import error_info
from worker.runner import JobFailed

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 60.0  # seconds to wait for a task announced as done to be done
FETCH_THREADS = 4
RESULT_TIMEOUT = 30  # seconds to get one result when gathering them together failed
EXCEPTION_TIMEOUT = 5  # seconds to get a failed task's exception


def outcome_from_envelope(job_id: str, envelope: bytes | memoryview) -> Outcome:
    """The outcome of a job from its envelope's bytes (the body stays a view)."""
    unpacked = unpack(envelope)
    return Outcome(
        job_id,
        ok=unpacked.ok,
        worker=unpacked.worker,
        started_at=unpacked.started,
        finished_at=unpacked.finished,
        error=unpacked.error,
        body=unpacked.body,
        logs=unpacked.logs,
        result_body=unpacked.result_body,
    )


class Fetcher:
    """The pool of fetch threads; each fetch ends in one call of ``deliver``."""

    def __init__(
        self,
        link: DaskLink,
        store: JobStore,
        tracker: JobTracker,
        reconcile_needed: threading.Event,
        deliver: Callable[[list[Outcome]], None],
    ) -> None:
        self._link = link
        self._store = store
        self._tracker = tracker
        self._reconcile_needed = reconcile_needed
        self._deliver = deliver
        self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="computethis-gather")

    def fetch(self, job_ids: list[str]) -> None:
        """Fetch the outcomes of these jobs (already marked fetching in the tracker)."""
        self._pool.submit(self._fetch, job_ids)

    def close(self) -> None:
        """Drop the fetches not started yet (their jobs are reconciled at the next start)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self, job_ids: list[str]) -> None:
        """(fetch thread) Get the outcomes of finished tasks and deliver them.

        A task not done within FETCH_TIMEOUT stays tracked (its outcome event, or the
        next sweep, brings it back here); one the scheduler no longer has is left to
        the reconciliation.
        """
        outcomes: list[Outcome] = []
        settled: list[str] = []
        try:
            client = self._link.client
            futures = self._futures_when_done(client, job_ids)
            pending = {job_id_of(f.key) for f in futures if f.status == "pending"}
            settled = [job_id for job_id in job_ids if job_id not in pending]
            done = [f for f in futures if f.status in ("finished", "error")]
            outcomes = self._outcomes_of(client, done) if done else []
            for outcome in outcomes:  # large results written here, not on the recorder
                self._store.stage_result(outcome)
        except Exception:
            log.exception("fetching %d outcomes failed; will reconcile", len(job_ids))
            for outcome in outcomes:
                if outcome.result_file is not None:
                    outcome.result_file.unlink(missing_ok=True)
            outcomes = []
            self._reconcile_needed.set()
        if len(outcomes) < len(settled):
            self._reconcile_needed.set()  # gone, cancelled, or failed here: look again
        self._tracker.end_fetching(job_ids, settled)
        self._deliver(outcomes)

    def _futures_when_done(self, client: Client | None, job_ids: list[str]) -> list[Future]:
        """Futures for the jobs' tasks the scheduler has, once all are done or
        FETCH_TIMEOUT has passed."""
        if client is None:
            return []
        # The futures first: the scheduler's answer to the attach goes to their state.
        futures = [Future(dask_key(job_id), client) for job_id in job_ids]
        known: set[str] = set()
        for start in range(0, len(futures), RPC_CHUNK):
            chunk = [future.key for future in futures[start : start + RPC_CHUNK]]
            known.update(
                client.sync(client.scheduler.computethis_attach, keys=chunk, client_id=client.id)
            )
        futures = [future for future in futures if future.key in known]
        deadline = time.monotonic() + FETCH_TIMEOUT
        for future in futures:
            with contextlib.suppress(TimeoutError):  # exception() waits until it is done
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
        return futures

    def _outcomes_of(self, client: Client | None, futures: list[Future]) -> list[Outcome]:
        """The outcomes of done futures: gathered results, or their failures."""
        assert client is not None
        finished = [future for future in futures if future.status == "finished"]
        outcomes = [_failure(future) for future in futures if future.status == "error"]
        try:
            envelopes = client.gather(finished)
        except Exception:  # one result lost: fetch one by one, skip what is gone
            envelopes = []
            for future in finished:
                try:
                    envelopes.append(future.result(timeout=RESULT_TIMEOUT))
                except Exception as exc:
                    log.warning("result of %s lost (%s); will reconcile", future.key, exc)
                    envelopes.append(None)
                    self._reconcile_needed.set()
        outcomes += [
            outcome_from_envelope(job_id_of(future.key), envelope)
            for future, envelope in zip(finished, envelopes, strict=True)
            if envelope is not None
        ]
        return outcomes


def _failure(future: Future) -> Outcome:
    """The outcome of a task that failed for good."""
    job_id = job_id_of(future.key)
    try:
        exc = future.exception(timeout=EXCEPTION_TIMEOUT)
    except Exception as error:  # the exception itself could not be fetched
        exc = error
    if isinstance(exc, JobFailed):
        return outcome_from_envelope(job_id, exc.envelope)
    if type(exc).__name__ == "KilledWorker":
        deaths = getattr(exc, "allowed_failures", 0) + 1
        message = (
            f"the worker died while running this job, {deaths} times (killed, out of "
            "memory, or os._exit in the function); it will not be retried"
        )
        error = error_info("WorkerDied", message)
    else:
        error = error_info(type(exc).__name__, str(exc))
    return Outcome(job_id, ok=False, error=error)
