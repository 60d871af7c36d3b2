"""The Dask cluster behind the gateway: its workers, and whether jobs can run."""

from __future__ import annotations

from typing import Any

from flask_restful import Resource

from gateway.api.ownership import visible_tenant
from gateway.services import services


class WorkerList(Resource):
    """``/workers``."""

    def get(self) -> dict[str, Any]:
        """Each worker's load (CPU, memory, busy or idle): the job it runs is named only
        to the admin and to the job's own tenant."""
        dispatcher = services().dispatcher
        workers = dispatcher.workers(tenant=visible_tenant())
        return {"count": len(workers), "workers": workers}


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
