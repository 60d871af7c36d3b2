"""Job timeouts: each running job with a timeout has a deadline (its start plus its
timeout); the recorder thread waits for the earliest and stops the jobs past theirs.

A deadline belongs to one attempt: a job that started again since (a worker died, or
Dask retried it) is not stopped by its earlier attempt's deadline.
"""

from __future__ import annotations

import heapq
import threading
import time

from gateway.store import ACTIVE, Job, JobStore, Outcome
from wire.errors import error_info


class Deadlines:
    """The armed deadlines, earliest first (armed by the recorder and the reconciliation,
    expired by the recorder)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, str, int]] = []  # (deadline, job id, attempt)

    def arm(self, job: Job) -> None:
        """Stop ``job``'s current attempt once its timeout has passed since it started."""
        assert job.timeout and job.started_at
        with self._lock:
            heapq.heappush(self._heap, (job.started_at + job.timeout, job.id, job.attempts))

    def seconds_to_next(self) -> float | None:
        """Seconds until the earliest deadline (0 if past), None if none is armed."""
        with self._lock:
            if not self._heap:
                return None
            return max(0.0, self._heap[0][0] - time.time())

    def overdue(self, store: JobStore) -> list[Job]:
        """Take the deadlines that have passed; returns their jobs still active in the
        same attempt (those to stop), as stored now."""
        now = time.time()
        due: list[tuple[str, int]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, job_id, attempt = heapq.heappop(self._heap)
                due.append((job_id, attempt))
        jobs = []
        for job_id, attempt in due:
            job = store.get(job_id)
            if job is not None and job.status in ACTIVE and job.attempts == attempt:
                jobs.append(job)
        return jobs


def timed_out(job: Job) -> Outcome:
    """The outcome recorded for a job stopped at its deadline."""
    error = error_info(
        "TimeoutError",
        f"the job ran longer than its timeout of {job.timeout:g} s and was stopped",
    )
    return Outcome(job.id, ok=False, error=error, worker=job.worker)
