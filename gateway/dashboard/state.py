"""The dashboard's share of one gateway process: its sessions and its snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from gateway.dashboard.sessions import Sessions
from gateway.dashboard.snapshot import Shared, Snapshots

EXTENSION = "computethis.dashboard"  # the key of ``app.extensions`` that holds it


@dataclass
class DashboardState:
    """The open sessions and the shared snapshots of one app."""

    sessions: Sessions = field(default_factory=Sessions)
    snapshots: Snapshots = field(default_factory=Snapshots)
    shared: Shared = field(default_factory=Shared)


def dashboard_state() -> DashboardState:
    """The current app's :class:`DashboardState`."""
    return current_app.extensions[EXTENSION]
