"""Direct calls: a single function job handed straight to an idle worker.

Through the scheduler, a job crosses gateway, scheduler and worker and its outcome comes
back the same way (about 5.5 of a sequential call's 6 ms on two cores); a direct call
sends the stored job's id and payload to the worker's ``computethis_direct`` handler
(:mod:`worker.direct`) over the Dask client's own connections, and the answer carries the
outcome, which is recorded as a result event is. The payload travels as bytes and the
answer is msgpack: nothing is unpickled here.

Only a job that Dask would add nothing to goes this way: a function job without retries
or ranks, with a small payload, when a worker known to be reachable from here has no
direct call in flight. A worker that is not idle answers ``busy`` (the next one is
tried); with none left, and whenever a call's connection breaks (the worker died, or
was restarted to cancel the job) or its worker leaves the scheduler's view (a host gone
silently) while the job is still active, the job goes through Dask as any other. The
reconciliation leaves jobs in flight here alone. :meth:`Submitter.submit
<gateway.dask.submit.Submitter.submit>` does not try a direct call for 50 ms after it
last sent jobs through Dask while any of its jobs there is not done: one may still be
on its way to a worker that looks idle here.

``computethis.direct-calls`` (a Dask setting, default true;
``DASK_COMPUTETHIS__DIRECT_CALLS=false``) turns them off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.dask.link import DaskLink
from gateway.store import ACTIVE, FUNCTION, Job, JobStore
from worker.direct import HANDLER

log = logging.getLogger(__name__)

SETTING = "computethis.direct-calls"
MAX_PAYLOAD = 1 << 20  # larger payloads go through Dask (sent straight to a worker)
PROBE_TIMEOUT = 1.0  # seconds to reach a worker the first time
PROBE_AGAIN = 60.0  # seconds before an unreachable worker is tried again
BUSY_FOR = 0.05  # seconds a worker that answered busy is left alone

OnResult = Callable[[tuple[float, dict[str, Any]]], None]
Resubmit = Callable[[Job, bytes], None]


@dataclass
class _Call:
    """A direct call in flight: the worker it went to, and its coroutine's future on
    the client's loop (None until it is scheduled there)."""

    worker: str
    running: concurrent.futures.Future | None = None


def enabled() -> bool:
    """Whether direct calls are on (the ``computethis.direct-calls`` Dask setting)."""
    import dask

    value = dask.config.get(SETTING, default=True)
    return str(value).strip().lower() not in ("false", "0", "no", "off")


class DirectCalls:
    """Direct calls in flight, and which workers take them; see the module docstring.

    ``on_result`` takes each outcome as a result event; ``resubmit`` sends a job through
    Dask (called on a thread of its own).
    """

    def __init__(self, link: DaskLink, store: JobStore, resubmit: Resubmit) -> None:
        self.on_result: OnResult | None = None
        self._link = link
        self._store = store
        self._resubmit = resubmit
        self._enabled = enabled()
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}  # job id -> its call in flight
        self._reachable: dict[str, float] = {}  # worker -> when it answered a probe
        self._unreachable: dict[str, float] = {}  # worker -> when a probe failed
        self._busy_until: dict[str, float] = {}
        self.answered = 0  # jobs whose outcome a direct call brought (for /metrics)
        self.through_dask = 0  # jobs sent as direct calls that went through Dask after all

    # -- questions ----------------------------------------------------------------

    def worker_of(self, job_id: str) -> str | None:
        """The worker running ``job_id`` as a direct call, if it is one."""
        with self._lock:
            call = self._calls.get(job_id)
            return None if call is None else call.worker

    def in_flight(self) -> set[str]:
        """The ids of the jobs in flight as direct calls."""
        with self._lock:
            return set(self._calls)

    # -- sending ------------------------------------------------------------------

    def try_send(self, job: Job, payload: bytes | memoryview | None) -> bool:
        """Send ``job`` as a direct call if it may go this way and a worker may take it;
        False: send it through Dask."""
        client = self._link.client
        if (
            not self._enabled
            or client is None
            or self.on_result is None
            or payload is None
            or job.kind != FUNCTION
            or job.ranks is not None
            or job.retries
            or len(payload) > MAX_PAYLOAD
        ):
            return False
        with self._lock:
            worker = self._pick(set())
            if worker is None:
                return False
            self._calls[job.id] = in_flight = _Call(worker)
        call = self._call(client, job, bytes(payload), worker)
        try:
            running = asyncio.run_coroutine_threadsafe(call, client.loop.asyncio_loop)
        except RuntimeError:  # the client's loop is closing: through Dask (later)
            call.close()
            with self._lock:
                self._calls.pop(job.id, None)
            return False
        with self._lock:
            in_flight.running = running  # (the call may have ended already: harmless)
        return True

    def forget_gone(self, workers: Iterable[str]) -> None:
        """End the calls in flight on workers the scheduler no longer has (a host that
        vanished without closing its connections): their jobs go through Dask now, not
        after the connection's TCP timeout. What was known of those workers is dropped."""
        present = set(workers)
        with self._lock:
            for seen in (self._reachable, self._unreachable, self._busy_until):
                for worker in [worker for worker in seen if worker not in present]:
                    del seen[worker]  # a worker that left (restarted ones come back new)
            gone = [call.running for call in self._calls.values() if call.worker not in present]
        for running in gone:
            if running is not None:
                running.cancel()

    def _pick(self, tried: set[str]) -> str | None:
        """(lock held) A reachable worker with no direct call in flight, not busy lately,
        not among ``tried``; starts probing the workers not tried yet."""
        now = time.monotonic()
        busy = {call.worker for call in self._calls.values()}
        for worker in self._link.cluster.workers:
            if worker in tried or worker in busy or self._busy_until.get(worker, 0.0) > now:
                continue
            if worker in self._reachable:
                return worker
            if now - self._unreachable.get(worker, -PROBE_AGAIN) >= PROBE_AGAIN:
                self._unreachable[worker] = now  # probing: not again meanwhile
                self._probe(worker)
        return None

    def _probe(self, worker: str) -> None:
        client = self._link.client
        if client is None:
            return

        async def probe() -> None:
            try:
                await asyncio.wait_for(client.rpc(worker).identity(), PROBE_TIMEOUT)
            except Exception as exc:  # unreachable from here: its jobs go through Dask
                log.info("worker %s not reachable for direct calls (%s)", worker, exc)
                return
            with self._lock:
                self._reachable[worker] = time.monotonic()
                self._unreachable.pop(worker, None)

        asyncio.run_coroutine_threadsafe(probe(), client.loop.asyncio_loop)

    async def _call(self, client: Any, job: Job, payload: bytes, worker: str) -> None:
        tried = {worker}
        while True:
            try:
                answer = await getattr(client.rpc(worker), HANDLER)(job=job.id, payload=payload)
            except (Exception, asyncio.CancelledError) as exc:  # the worker died or was
                # restarted (a cancel), or it left the cluster (forget_gone)
                log.info("direct call of job %s on %s ended (%r)", job.id, worker, exc)
                with self._lock:
                    self._calls.pop(job.id, None)
                    self._reachable.pop(worker, None)
                self._through_dask(job, payload)
                return
            if answer.get("status") in ("done", "failed"):
                with self._lock:
                    self._calls.pop(job.id, None)
                    self.answered += 1
                assert self.on_result is not None
                self.on_result((time.time(), {"job": job.id, "envelope": answer["envelope"]}))
                return
            with self._lock:  # busy: the next worker, or Dask
                self._busy_until[worker] = time.monotonic() + BUSY_FOR
                worker = self._pick(tried)
                if worker is None:
                    self._calls.pop(job.id, None)
                else:
                    self._calls[job.id].worker = worker
                    tried.add(worker)
            if worker is None:
                self._through_dask(job, payload)
                return

    def _through_dask(self, job: Job, payload: bytes) -> None:
        """Send a job that is still active through Dask, on a thread of its own."""

        def send() -> None:
            current = self._store.get(job.id)
            if current is not None and current.status in ACTIVE:  # not cancelled meanwhile
                with self._lock:
                    self.through_dask += 1
                self._resubmit(current, payload)

        threading.Thread(target=send, name="computethis-direct-fallback", daemon=True).start()
