"""Direct calls: the gateway hands a single function job straight to an idle worker.

A sequential ``compute`` through the scheduler crosses four hops (gateway, scheduler,
worker, and back the same way); a direct call crosses two. The gateway sends the job's
id and payload (bytes, never unpickled on its side) to this worker's
``computethis_direct`` handler, which answers ``{"status": "busy"}`` at once unless the
worker is idle (no task executing or ready, no direct call running); otherwise it runs
the job in the worker's own task executor, whose single thread Dask's tasks use too, so
the worker still runs one job at a time, and answers ``{"status": "done", "envelope":
...}`` with the outcome (``"failed"`` when the function raised).

A call still running after ``PAUSE_AFTER`` seconds *pauses* the worker, Dask's own way
of keeping a worker from taking new tasks (as under memory pressure): the scheduler
gives its tasks to other workers meanwhile, or queues them, instead of leaving one to
wait behind a long call here (only a task given to the worker in a call's first
``PAUSE_AFTER`` seconds waits for it). Dask's memory monitor, which resumes a paused
worker whose memory is low, is kept from doing so until the call ends. Short calls do
not pause: pausing and resuming every call cost more than the call (two more messages
to the scheduler, and with them a sequential call took 7.2 ms instead of 4.7).

The answer carries the outcome. A small one is also published as a result event, as
a task's is: a gateway restarted while the call ran (its answer lost) finds it in the
scheduler's event log (:mod:`scheduler.plugin` replays it) instead of running the job
again; the gateway records each outcome once. If the worker dies, or a larger outcome's
answer is lost, the gateway runs the job again through Dask.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distributed.core import Status

from wire.envelope import RESULT_TOPIC
from wire.limits import PUSH_LIMIT
from worker.runner import JobFailed, run_job

HANDLER = "computethis_direct"
PAUSE_AFTER = 0.02  # seconds a call runs before its worker is paused


class DirectCalls:
    """The ``computethis_direct`` handler of one worker (see the module docstring)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.running = False
        self._paused = False  # by the call running now
        self._pause_fraction: Any = None  # the memory monitor's, while a call pauses

    def idle(self) -> bool:
        """Whether no job runs or waits here: no direct call, no task executing or ready."""
        state = self.worker.state
        return not (self.running or state.executing_count or state.ready)

    async def run(self, job: str, payload: bytes) -> dict[str, Any]:
        """Run job ``job`` now if this worker is idle; its outcome, or ``busy``."""
        if not self.idle():
            return {"status": "busy"}
        self.running = True
        loop = asyncio.get_running_loop()
        pause = loop.call_later(PAUSE_AFTER, self._pause)
        try:
            executor = self.worker.executors["default"]
            return await loop.run_in_executor(executor, self._call, job, payload)
        finally:
            pause.cancel()
            self.running = False
            if self._paused:
                self._resume()

    def _pause(self) -> None:
        """Pause the worker, if it runs normally (on its event loop)."""
        worker = self.worker
        if worker.status != Status.running:
            return
        manager = worker.memory_manager
        self._pause_fraction = manager.memory_pause_fraction
        manager.memory_pause_fraction = False  # the monitor neither resumes nor pauses
        self._paused = True
        worker.status = Status.paused

    def _resume(self) -> None:
        """Undo :meth:`_pause` (the memory monitor pauses it again if memory is high)."""
        worker = self.worker
        worker.memory_manager.memory_pause_fraction = self._pause_fraction
        self._paused = False
        if worker.status == Status.paused:
            worker.status = Status.running

    def _call(self, job: str, payload: bytes) -> dict[str, Any]:
        from distributed.worker import _worker_cvar  # what get_worker() reads

        token = _worker_cvar.set(self.worker)  # as Dask sets it for a task
        try:
            answer = {"status": "done", "envelope": bytes(run_job(job, payload, publish=False))}
        except JobFailed as failed:
            answer = {"status": "failed", "envelope": failed.envelope}
        finally:
            _worker_cvar.reset(token)
        if len(answer["envelope"]) <= PUSH_LIMIT:  # also as a result event: see above
            event = {"job": job, "envelope": answer["envelope"], "direct": True}
            self.worker.log_event(RESULT_TOPIC, event)
        return answer


def install(worker: Any) -> None:
    """Register the handler on ``worker`` (from the worker preload)."""
    worker.handlers[HANDLER] = DirectCalls(worker).run
