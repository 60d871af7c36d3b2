"""The Flask application factory."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Flask, request
from flask_restful import Api

from gateway import openapi, resources
from gateway.config import GatewayConfig
from gateway.context import ADMIN_TENANT, Gateway, gateway, is_admin
from gateway.dask import Dispatcher
from gateway.errors import ApiError, error_response, install_error_handlers
from gateway.janitor import Janitor
from gateway.metrics import GatewayMetrics
from gateway.store import JobStore
from gateway.tokens import TokenStore
from gateway.waiters import Waiters
from wire.http import API_PREFIX, BATCH_PATH, JOBS_PATH, RESULTS_PATH

PUBLIC_ENDPOINTS = {"health", "openapi"}


class JsonApi(Api):
    """Flask-RESTful API whose errors use the project's JSON error shape."""

    def handle_error(self, e: Exception) -> Any:
        return error_response(e)


def create_app(config: GatewayConfig, scheduler: Any) -> Flask:
    """Build the gateway app. ``scheduler`` is an address or a Dask cluster object.

    The caller starts the background work (``app.extensions["computethis"].start()``)
    once the app is about to serve, and closes it on shutdown.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    store = JobStore(config.save_dir, durable=config.durable)
    waiters = Waiters()
    dispatcher = Dispatcher(store, waiters, scheduler)
    metrics = GatewayMetrics(store, lambda: dispatcher.cluster)
    dispatcher.on_recorded = metrics.job_outcomes
    janitor = Janitor(store, config.result_ttl)
    tokens = TokenStore(store.db_path)
    app.extensions["computethis"] = Gateway(
        config, store, waiters, dispatcher, janitor, tokens, metrics
    )
    metrics.install(app)
    app.add_url_rule("/metrics", "metrics", _metrics)

    install_error_handlers(app)
    app.before_request(_authenticate)

    api = JsonApi(app, catch_all_404s=True)
    api.add_resource(resources.JobList, JOBS_PATH, endpoint="jobs")
    api.add_resource(resources.JobBatch, BATCH_PATH, endpoint="batch")
    api.add_resource(resources.JobResults, RESULTS_PATH, endpoint="results")
    api.add_resource(resources.JobItem, f"{JOBS_PATH}/<string:job_id>", endpoint="job")
    api.add_resource(resources.JobCancel, f"{JOBS_PATH}/<string:job_id>/cancel", endpoint="cancel")
    api.add_resource(resources.JobResult, f"{JOBS_PATH}/<string:job_id>/result", endpoint="result")
    api.add_resource(resources.JobLogs, f"{JOBS_PATH}/<string:job_id>/logs", endpoint="logs")
    api.add_resource(resources.WorkerList, f"{API_PREFIX}/workers", endpoint="workers")
    api.add_resource(resources.Health, f"{API_PREFIX}/health", endpoint="health")
    api.add_resource(openapi.OpenApiDocument, f"{API_PREFIX}/openapi.json", endpoint="openapi")
    return app


def _metrics() -> Any:
    """Prometheus metrics; they describe every tenant's work, so admin token only."""
    if not is_admin():
        raise ApiError(403, "forbidden", "/metrics needs the admin token")
    return gateway().metrics.render()


def _authenticate() -> None:
    """Resolve the bearer token to a tenant: the admin token, or a tenant's token."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    gw = gateway()
    tenant = None
    if scheme.lower() == "bearer" and token:
        if hmac.compare_digest(token.encode(), gw.config.token.encode()):
            tenant = ADMIN_TENANT
        else:
            tenant = gw.tokens.tenant_for(token)
    if tenant is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong token: send 'Authorization: Bearer TOKEN' (the token "
            "`computethis up` printed, or one from `computethis token create`)",
            {"WWW-Authenticate": 'Bearer realm="computethis"'},
        )
    request.environ["computethis.tenant"] = tenant
