"""What every dashboard viewer sees of the cluster and the store, built at most once a
second and shared by all viewers of the same tenant.

A snapshot reads the dispatcher's cached cluster view (refreshed in the background:
never a call to the scheduler per request) and a few bounded store queries
(:mod:`gateway.dashboard.queries`). However many dashboards are open, the gateway does
that work once a second per tenant watching (:class:`Shared`; the jobs list's rows are
shared the same way per tenant and filter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.dashboard import queries
from gateway.services import Services

FRESH_FOR = 1.0  # seconds a snapshot is served before it is built again
MAX_KEPT = 1024  # values kept (per tenant and page watched), the oldest dropped beyond

T = TypeVar("T")


@dataclass
class Presence:
    """What the dashboard has seen of one worker (by name) since the gateway started."""

    address: str
    since: float  # when this address first appeared (the worker's process start, or later)
    restarts: int = 0  # times the name came back on a new address (a restarted process)


class WorkerHistory:
    """Uptime and restarts of each worker, as the gateway saw them: a worker restarted by
    its nanny comes back under the same name on a new address."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, Presence] = {}

    def observe(self, workers: list[dict[str, Any]], now: float) -> dict[str, Presence]:
        """Update from the current workers (each with ``name`` and ``address``)."""
        with self._lock:
            for worker in workers:
                name, address = worker["name"], worker["address"]
                seen = self._seen.get(name)
                if seen is None:
                    self._seen[name] = Presence(address, now)
                elif seen.address != address:
                    seen.address, seen.since, seen.restarts = address, now, seen.restarts + 1
            return dict(self._seen)


class Shared:
    """Values built at most once per ``fresh_for`` seconds per key and handed to every
    viewer who asks meanwhile (one builds while the others wait, then share it)."""

    def __init__(self, fresh_for: float = FRESH_FOR, limit: int = MAX_KEPT) -> None:
        self.fresh_for = fresh_for
        self.limit = limit
        self._lock = threading.Lock()
        self._built: dict[Hashable, tuple[float, Any]] = {}
        self.builds = 0  # how many were built (for tests and benchmarks)

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value of ``key``, built anew by ``build()`` if the last is too old."""
        with self._lock:
            built = self._built.get(key)
            if built is not None and time.monotonic() - built[0] < self.fresh_for:
                return built[1]
            value = build()
            self._built.pop(key, None)
            self._built[key] = (time.monotonic(), value)
            while len(self._built) > self.limit:
                self._built.pop(next(iter(self._built)))
            self.builds += 1
            return value


class Snapshots:
    """Builds the snapshot of a tenant (None: the admin's, every tenant's jobs)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.history = WorkerHistory()

    def build(self, shared: Services, tenant: str | None) -> dict[str, Any]:
        """A new snapshot (callers share it through :class:`Shared`)."""
        return self._build(shared, tenant)

    def _build(self, shared: Services, tenant: str | None) -> dict[str, Any]:
        now = self._clock()
        db = shared.store.db.connection()
        cluster = shared.dispatcher.cluster
        workers = shared.dispatcher.workers(tenant=tenant)
        seen = self.history.observe(workers, now)
        for worker in workers:
            info = cluster.workers.get(worker["address"], {})
            presence = seen.get(worker["name"])
            worker["host"] = info.get("host") or _host(worker["address"])
            worker["uptime"] = round(now - presence.since, 1) if presence else None
            worker["restarts"] = presence.restarts if presence else 0
            worker["memory_percent"] = _percent(worker.get("memory"), worker.get("memory_limit"))
        busy = sum(1 for worker in workers if worker["busy"])
        return {
            "time": now,
            "connected": cluster.connected,
            "workers": workers,
            "busy": busy,
            "idle": len(workers) - busy,
            "counts": queries.counts(db, tenant),
            "throughput": queries.throughput(db, tenant, now),
            "allocations": _compact(queries.allocations(db, tenant, now), now),
            "timeline_window": queries.TIMELINE_WINDOW,
            "failures": queries.recent_failures(db, tenant),
        }


def _compact(allocations: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """The timeline's jobs, small to send every second: ``workers`` (their addresses)
    and ``jobs``, each ``[worker index, id, name, status, start, end]`` with its times
    in seconds before ``now`` (``end`` None while it runs)."""
    workers: dict[str, int] = {}
    jobs = []
    for job in allocations:
        worker = workers.setdefault(job["worker"], len(workers))
        end = None if job["end"] is None else round(job["end"] - now, 1)
        jobs.append(
            [worker, job["id"], job["name"] or "", job["status"], round(job["start"] - now, 1), end]
        )
    return {"workers": list(workers), "jobs": jobs}


def _host(address: str) -> str:
    """The host part of a Dask address like ``tcp://10.0.0.5:40123``."""
    rest = address.partition("://")[2] or address
    return rest.rpartition(":")[0] or rest


def _percent(part: Any, whole: Any) -> float | None:
    if not isinstance(part, (int, float)) or not isinstance(whole, (int, float)) or not whole:
        return None
    return round(100.0 * part / whole, 1)
