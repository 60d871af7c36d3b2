"""``GET /metrics``: the gateway's state in Prometheus text format.

Counters and histograms are updated as things happen (submissions, outcomes, HTTP
requests); gauges about jobs and workers are read from the store and the cluster view
when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.store import STATUSES, JobStore

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(self, store: JobStore, cluster_view: Any) -> None:
        self.registry = CollectorRegistry()
        self.submitted = Counter(
            "computethis_jobs_submitted", "Jobs accepted (201)", registry=self.registry
        )
        self.completed = Counter(
            "computethis_jobs_completed",
            "Jobs that reached an outcome, by status",
            ["status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "computethis_job_duration_seconds",
            "Run time of finished and failed jobs on their worker",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.http = Histogram(
            "computethis_http_request_duration_seconds",
            "HTTP request latency by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self._http_series: dict[tuple[str, str, int], Any] = {}
        self.registry.register(_StoreCollector(store, cluster_view))

    def job_outcomes(self, outcomes: list[Any]) -> None:
        """Count recorded outcomes (store.Outcome) and their run times."""
        for outcome in outcomes:
            self.completed.labels("finished" if outcome.ok else "failed").inc()
            if outcome.started_at and outcome.finished_at:
                self.duration.observe(max(0.0, outcome.finished_at - outcome.started_at))

    def install(self, app: Flask) -> None:
        """Time every request."""

        @app.before_request
        def _start_timer() -> None:
            g.computethis_started = time.perf_counter()

        @app.after_request
        def _observe(response: Response) -> Response:
            started = g.get("computethis_started")
            if started is not None:
                labels = (request.endpoint or "unknown", request.method, response.status_code)
                series = self._http_series.get(labels)
                if series is None:  # labels() takes a lock and builds its key each time
                    series = self._http_series[labels] = self.http.labels(*labels)
                series.observe(time.perf_counter() - started)
            return response

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)


class _StoreCollector:
    """Gauges read at scrape time: jobs by status, queue depth, workers."""

    def __init__(self, store: JobStore, cluster_view: Any) -> None:
        self.store = store
        self.cluster_view = cluster_view

    def collect(self) -> Iterator[Metric]:
        counts = self.store.count_by_status()
        jobs = GaugeMetricFamily(
            "computethis_jobs", "Jobs in the store by status", labels=["status"]
        )
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "computethis_queue_depth", "Jobs queued, not yet running", value=counts.get("queued", 0)
        )
        cluster = self.cluster_view()
        stats = self.store.worker_stats()
        completed = GaugeMetricFamily(
            "computethis_worker_jobs_completed",
            "Jobs finished per worker",
            labels=["worker", "name"],
        )
        busy = GaugeMetricFamily(
            "computethis_worker_busy", "1 while the worker runs a job", labels=["worker", "name"]
        )
        for address, info in sorted(cluster.workers.items()):
            own = stats.get(address, {})
            labels = [address, str(info.get("name"))]
            completed.add_metric(labels, own.get("completed", 0))
            busy.add_metric(labels, 1 if own.get("current_job") else 0)
        yield completed
        yield busy
        yield GaugeMetricFamily(
            "computethis_workers", "Workers connected to the scheduler", value=len(cluster.workers)
        )
        yield GaugeMetricFamily(
            "computethis_scheduler_connected",
            "1 when the scheduler is reachable",
            value=int(cluster.connected),
        )
