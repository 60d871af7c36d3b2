"""Every route of API v1, under ``/api/v1`` (:data:`wire.http.API_PREFIX`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask_restful import Api

from gateway.api.artifacts import ArtifactItem
from gateway.api.batches import JobBatch
from gateway.api.cluster import Health, WorkerList
from gateway.api.deployments import DeploymentCalls, DeploymentItem, DeploymentList
from gateway.api.errors import error_response
from gateway.api.folders import BundleItem, RunList
from gateway.api.jobs import JobCancel, JobItem, JobList
from gateway.api.logs import JobLogs
from gateway.api.openapi import OpenApiDocument
from gateway.api.outputs import JobOutputFile, JobOutputs, JobOutputsZip
from gateway.api.results import JobResult, JobResults
from wire.http import (
    API_PREFIX,
    ARTIFACTS_PATH,
    BATCH_PATH,
    BUNDLES_PATH,
    DEPLOYMENTS_PATH,
    JOBS_PATH,
    RESULTS_PATH,
    RUNS_PATH,
)

BLUEPRINT = "api"
# Endpoints that answer without a token.
PUBLIC_ENDPOINTS = frozenset({f"{BLUEPRINT}.health", f"{BLUEPRINT}.openapi"})


class JsonApi(Api):
    """Flask-RESTful API whose errors use the project's JSON error shape."""

    def handle_error(self, e: Exception) -> Any:
        """Every error as ``{"error", "message"}`` (see :func:`error_response`)."""
        return error_response(e)


def create_blueprint() -> Blueprint:
    """A new blueprint of API v1 (Flask-RESTful lets each be registered only once)."""
    blueprint = Blueprint(BLUEPRINT, __name__, url_prefix=API_PREFIX)
    api = JsonApi(blueprint, catch_all_404s=True)
    jobs, job = _below_prefix(JOBS_PATH), f"{_below_prefix(JOBS_PATH)}/<string:job_id>"
    api.add_resource(JobList, jobs, endpoint="jobs")
    api.add_resource(JobBatch, _below_prefix(BATCH_PATH), endpoint="batch")
    api.add_resource(JobResults, _below_prefix(RESULTS_PATH), endpoint="results")
    api.add_resource(JobItem, job, endpoint="job")
    api.add_resource(JobCancel, f"{job}/cancel", endpoint="cancel")
    api.add_resource(JobResult, f"{job}/result", endpoint="result")
    api.add_resource(JobLogs, f"{job}/logs", endpoint="logs")
    api.add_resource(JobOutputs, f"{job}/outputs", endpoint="outputs")
    api.add_resource(JobOutputsZip, f"{job}/outputs.zip", endpoint="outputs_zip")
    api.add_resource(JobOutputFile, f"{job}/outputs/<path:path>", endpoint="output_file")
    bundle = f"{_below_prefix(BUNDLES_PATH)}/<string:digest>"
    api.add_resource(BundleItem, bundle, endpoint="bundle")
    api.add_resource(RunList, _below_prefix(RUNS_PATH), endpoint="runs")
    deployments = _below_prefix(DEPLOYMENTS_PATH)
    api.add_resource(DeploymentList, deployments, endpoint="deployments")
    deployment = f"{deployments}/<string:deployment_id>"
    api.add_resource(DeploymentItem, deployment, endpoint="deployment")
    api.add_resource(DeploymentCalls, f"{deployment}/calls", endpoint="deployment_calls")
    artifact = f"{_below_prefix(ARTIFACTS_PATH)}/<string:digest>"
    api.add_resource(ArtifactItem, artifact, endpoint="artifact")
    api.add_resource(WorkerList, "/workers", endpoint="workers")
    api.add_resource(Health, "/health", endpoint="health")
    api.add_resource(OpenApiDocument, "/openapi.json", endpoint="openapi")
    return blueprint


def _below_prefix(path: str) -> str:
    """``path`` (a full path of :mod:`wire.http`) relative to the API's prefix."""
    if not path.startswith(f"{API_PREFIX}/"):
        raise ValueError(f"{path} is not under {API_PREFIX}")
    return path[len(API_PREFIX) :]
