"""The Dask cluster behind the gateway: its workers, and whether jobs can run."""

from __future__ import annotations

from typing import Any

from flask_restful import Resource

from gateway.api.auth import is_admin
from gateway.services import services


class WorkerList(Resource):
    """``/workers``."""

    def get(self) -> dict[str, Any]:
        """Worker count for everyone; each worker's details for the admin token only."""
        dispatcher = services().dispatcher
        body: dict[str, Any] = {"count": len(dispatcher.cluster.workers)}
        if is_admin():
            body["workers"] = dispatcher.workers()
        return body


class Health(Resource):
    """``/health`` (no token needed)."""

    def get(self) -> tuple[dict[str, Any], int]:
        """``ok`` (200) when the scheduler is reachable and has workers, else ``degraded`` (503)."""
        cluster = services().dispatcher.cluster
        healthy = cluster.connected and bool(cluster.workers)
        body = {
            "status": "ok" if healthy else "degraded",
            "scheduler": cluster.scheduler,
            "workers": len(cluster.workers),
        }
        return body, 200 if healthy else 503
