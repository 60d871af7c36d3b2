"""``GET /metrics``: the gateway's state in Prometheus text format.

Counters and histograms are updated as things happen (submissions, outcomes, HTTP
requests); gauges about jobs and workers are read from the store and the cluster view
when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.store import STATUSES, JobStore

DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(self, store: JobStore, cluster_view: Any) -> None:
        self.registry = CollectorRegistry()
        self.submitted = Counter(
            "computethis_jobs_submitted", "Jobs accepted (201)", registry=self.registry
        )
        self.bundle_bytes = Counter(
            "computethis_bundle_bytes_received",
            "Bytes of folders (bundles) uploaded and kept",
            registry=self.registry,
        )
        self.artifact_bytes = Counter(
            "computethis_artifact_bytes_received",
            "Bytes of model artifacts uploaded and kept",
            registry=self.registry,
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
        self.in_progress = Gauge(
            "computethis_http_requests_in_progress",
            "HTTP requests being answered, long-polls and streams included: each holds "
            "a thread of the HTTP server until its answer ends",
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store, cluster_view))

    def watch_http_server(self, pool: Any, connections: Any) -> None:
        """Report the HTTP server's free threads and waiting connections (a cheroot
        ``ThreadPool``: its ``idle`` and ``qsize``) and its connections (a
        :class:`gateway.connections.ConnectionCounters`) at each scrape."""
        self.registry.register(_HttpServerCollector(pool, connections))

    def watch_direct_calls(self, direct: Any) -> None:
        """Report the direct calls (a :class:`gateway.dask.direct.DirectCalls`: its
        ``answered`` and ``through_dask`` counts) at each scrape."""
        self.registry.register(_DirectCallsCollector(direct))

    def job_outcomes(self, outcomes: list[Any]) -> None:
        """Count recorded outcomes (store.Outcome) and their run times."""
        for outcome in outcomes:
            self.completed.labels("finished" if outcome.ok else "failed").inc()
            if outcome.started_at and outcome.finished_at:
                self.duration.observe(max(0.0, outcome.finished_at - outcome.started_at))

    def install(self, app: Flask) -> None:
        """Time every request, and count those in progress until their answer ends."""
        app.wsgi_app = self._counted(app.wsgi_app)  # type: ignore[method-assign]

        @app.before_request
        def _start_timer() -> None:
            g.computethis_started = time.perf_counter()

        @app.after_request
        def _observe(response: Response) -> Response:
            started = g.get("computethis_started")
            if started is not None:
                # The API's endpoints without their blueprint: "jobs", not "api.jobs";
                # the dashboard's with it ("dashboard.jobs": its page, not the API's).
                endpoint = (request.endpoint or "unknown").removeprefix("api.")
                labels = (endpoint, request.method, response.status_code)
                series = self._http_series.get(labels)
                if series is None:  # labels() takes a lock and builds its key each time
                    series = self._http_series[labels] = self.http.labels(*labels)
                series.observe(time.perf_counter() - started)
            return response

    def render(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=CONTENT_TYPE_LATEST)

    def _counted(self, wsgi_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """``wsgi_app``, counted in ``in_progress`` from the call until the server closes
        the answer (a streamed answer ends long after the view returned)."""
        in_progress = self.in_progress

        def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            in_progress.inc()
            try:
                body = wsgi_app(environ, start_response)
            except BaseException:
                in_progress.dec()
                raise
            return _ClosedThen(body, in_progress.dec)

        return counted


class _ClosedThen:
    """A WSGI answer that calls ``then`` once the server has closed it."""

    def __init__(self, body: Iterable[bytes], then: Callable[[], None]) -> None:
        self.body = body
        self.then = then

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.then()


class _HttpServerCollector:
    """The HTTP server's threads and connections, read at scrape time."""

    def __init__(self, pool: Any, connections: Any) -> None:
        self.pool = pool
        self.connections = connections

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "computethis_http_threads",
            "HTTP server threads, busy or idle",
            value=len(self.pool._threads),
        )
        yield GaugeMetricFamily(
            "computethis_http_threads_idle",
            "HTTP server threads waiting for a request (the pool grows to keep 16 free)",
            value=self.pool.idle,
        )
        yield GaugeMetricFamily(
            "computethis_http_connections_queued",
            "Connections with a request waiting for a free HTTP server thread",
            value=self.pool.qsize,
        )
        counts = self.connections
        yield GaugeMetricFamily(
            "computethis_http_connections_open",
            "Open client connections (idle ones wait in the selector, not in a thread)",
            value=counts.open_connections(),
        )
        yield GaugeMetricFamily(
            "computethis_http_connection_addresses",
            "Client addresses with a connection open",
            value=counts.addresses(),
        )
        yield GaugeMetricFamily(
            "computethis_http_connections_busiest_address",
            "Open connections of the client address that has the most (capped by "
            "--max-connections-per-address)",
            value=counts.busiest_address(),
        )
        yield CounterMetricFamily(
            "computethis_http_connections_refused",
            "Connections refused at accept (503) because their address had too many open",
            value=counts.refused,
        )
        yield GaugeMetricFamily(
            "computethis_http_answers_waiting",
            "Long-polls and outcome streams waiting for jobs (parked: no thread each)",
            value=counts.parked(),
        )
        yield CounterMetricFamily(
            "computethis_http_requests_timed_out",
            "Requests whose headers did not arrive within --header-timeout (408), and new "
            "connections closed for sending nothing that long",
            value=counts.timed_out,
        )


class _DirectCallsCollector:
    """Counters of direct calls, read at scrape time."""

    def __init__(self, direct: Any) -> None:
        self.direct = direct

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "computethis_direct_calls_answered",
            "Single function jobs run as direct calls on an idle worker (not through the "
            "scheduler), their outcome brought back by the call",
            value=self.direct.answered,
        )
        yield CounterMetricFamily(
            "computethis_direct_calls_through_dask",
            "Jobs sent as direct calls that went through Dask after all (every worker "
            "busy, or the call's connection lost)",
            value=self.direct.through_dask,
        )


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
            "computethis_deployments",
            "Deployed classes not closed",
            value=self.store.deployments.count_active(),
        )
        yield GaugeMetricFamily(
            "computethis_scheduler_connected",
            "1 when the scheduler is reachable",
            value=int(cluster.connected),
        )
