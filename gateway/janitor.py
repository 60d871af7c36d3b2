"""Retention: expire done jobs whose results are older than the configured TTL, and
uploaded folders (bundles) and model artifacts not used for as long (an open
deployment's artifacts are kept)."""

from __future__ import annotations

import logging
import threading
import time

from gateway.store import JobStore

log = logging.getLogger(__name__)


class Janitor:
    """A background thread that expires old results every ``interval`` seconds."""

    def __init__(self, store: JobStore, ttl: float, interval: float | None = None) -> None:
        self.store = store
        self.ttl = ttl
        self.interval = interval if interval is not None else max(0.5, min(ttl / 10, 60.0))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="computethis-janitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def sweep(self) -> list[str]:
        """Expire every done job that finished more than ``ttl`` seconds ago."""
        cutoff = time.time() - self.ttl
        expired = self.store.expire(finished_before=cutoff)
        if expired:
            log.info("expired %d jobs older than %g s", len(expired), self.ttl)
        bundles = self.store.bundles.expire(unused_since=cutoff)
        if bundles:
            log.info("removed %d bundles unused for %g s", bundles, self.ttl)
        artifacts = self.store.artifacts
        loaded = {artifacts.path(*item) for item in self.store.deployments.artifacts_in_use()}
        removed = artifacts.expire(unused_since=cutoff, keep=loaded)
        if removed:
            log.info("removed %d artifacts unused for %g s", removed, self.ttl)
        return expired

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed")
