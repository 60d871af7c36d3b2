"""The objects one gateway process shares between its requests, built once per app."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app

from gateway.config import GatewayConfig
from gateway.dask import Dispatcher
from gateway.janitor import Janitor
from gateway.live_logs import LiveLogs
from gateway.metrics import GatewayMetrics
from gateway.store import JobStore, Outcome
from gateway.tokens import TokenStore
from gateway.waiters import Waiters
from wire.envelope import LOGS_TOPIC

log = logging.getLogger(__name__)

# The key of ``app.extensions`` that holds the app's :class:`Services`.
EXTENSION = "computethis"


@dataclass
class Services:
    """The job store, dispatcher, waiters... of one gateway process."""

    config: GatewayConfig
    store: JobStore
    waiters: Waiters
    dispatcher: Dispatcher
    janitor: Janitor
    tokens: TokenStore
    metrics: GatewayMetrics
    live_logs: LiveLogs

    @classmethod
    def create(cls, config: GatewayConfig, scheduler: Any) -> Services:
        """Build them (nothing starts yet); ``scheduler``: an address or a Dask cluster."""
        store = JobStore(config.save_dir, durable=config.durable)
        waiters = Waiters()
        dispatcher = Dispatcher(store, waiters, scheduler)
        metrics = GatewayMetrics(store, lambda: dispatcher.cluster)
        metrics.watch_direct_calls(dispatcher.submitter.direct)
        live_logs = LiveLogs()
        dispatcher.link.listen(LOGS_TOPIC, live_logs.on_event)

        def recorded(outcomes: list[Outcome]) -> None:
            metrics.job_outcomes(outcomes)
            live_logs.jobs_ended([outcome.job_id for outcome in outcomes])

        dispatcher.on_recorded = recorded
        janitor = Janitor(store, config.result_ttl)
        tokens = TokenStore(store.db_path)
        return cls(config, store, waiters, dispatcher, janitor, tokens, metrics, live_logs)

    def start(self) -> None:
        """Repair the store after a crash, then start submitting and expiring jobs."""
        repaired = self.store.repair()
        if any(repaired.values()):
            log.warning("store repaired at start-up: %s", repaired)
        self.dispatcher.start()
        self.janitor.start()

    def stop_waiting(self) -> None:
        """Answer every request that waits (long-polls, streams, log followers) now."""
        self.waiters.close()
        self.live_logs.close()

    def close(self) -> None:
        """Stop expiring and submitting jobs, then close the store."""
        self.janitor.close()
        self.dispatcher.close()
        self.store.close()


def services() -> Services:
    """The current app's :class:`Services` (inside a request or an app context)."""
    return current_app.extensions[EXTENSION]
