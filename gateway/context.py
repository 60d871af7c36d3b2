"""Per-process gateway objects and per-request identity, reachable from resources."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app, request

from gateway.config import GatewayConfig
from gateway.dask import Dispatcher
from gateway.janitor import Janitor
from gateway.store import JobStore

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics
    from gateway.tokens import TokenStore
from gateway.waiters import Waiters

log = logging.getLogger(__name__)

ADMIN_TENANT = "admin"


@dataclass
class Gateway:
    """The objects one gateway process shares between requests."""

    config: GatewayConfig
    store: JobStore
    waiters: Waiters
    dispatcher: Dispatcher
    janitor: Janitor
    tokens: TokenStore
    metrics: GatewayMetrics

    def start(self) -> None:
        """Repair the store after a crash, then start submitting and expiring jobs."""
        repaired = self.store.repair()
        if any(repaired.values()):
            log.warning("store repaired at start-up: %s", repaired)
        self.dispatcher.start()
        self.janitor.start()

    def close(self) -> None:
        self.janitor.close()
        self.dispatcher.close()
        self.store.close()


def gateway() -> Gateway:
    return current_app.extensions["computethis"]


def tenant() -> str:
    """The tenant the current request authenticated as."""
    return request.environ["computethis.tenant"]


def is_admin() -> bool:
    """True when the request used the admin token (sees every tenant's jobs)."""
    return tenant() == ADMIN_TENANT


def tenant_scope() -> str | None:
    """Whose jobs the request may read: the store's ``tenant`` argument. The request's
    tenant, or None (every tenant's) for the admin."""
    return None if is_admin() else tenant()
