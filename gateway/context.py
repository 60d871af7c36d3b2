"""Per-process gateway objects and per-request identity, reachable from resources."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

from gateway.config import GatewayConfig
from gateway.dispatcher import Dispatcher
from gateway.store import JobStore
from gateway.waiters import Waiters

ADMIN_TENANT = "admin"


@dataclass
class Gateway:
    """The objects one gateway process shares between requests."""

    config: GatewayConfig
    store: JobStore
    waiters: Waiters
    dispatcher: Dispatcher


def gateway() -> Gateway:
    return current_app.extensions["computethis"]


def tenant() -> str:
    """The tenant the current request authenticated as."""
    return request.environ["computethis.tenant"]
