"""The dashboard's pages of deployed model classes: the list, one deployment (its
replicas, their construct jobs and workers) and its Close button. They read and act
through the REST API's own handlers, in the dashboard's request (whose tenant the
session set): a tenant sees and closes only its own deployments."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from gateway.api.deployments import DeploymentItem, DeploymentList

NOTICES = {"closed": "The deployment was closed: its calls were cancelled, its replicas let go."}


def deployments() -> Any:
    """Every deployment of the viewer, newest first (``closed=1``: closed ones too)."""
    listed = DeploymentList().get()["deployments"]
    return render_template(
        "dashboard/deployments.html",
        page="deployments",
        deployments=listed,
        closed=request.args.get("closed") == "1",
        notice=NOTICES.get(request.args.get("notice", "")),
    )


def deployment(deployment_id: str) -> Any:
    """One deployment: status, methods, artifacts, replicas and their workers."""
    return render_template(
        "dashboard/deployment.html",
        page="deployments",
        deployment=DeploymentItem().get(deployment_id),
        notice=NOTICES.get(request.args.get("notice", "")),
    )


def close_deployment(deployment_id: str) -> Any:
    """``POST .../deployments/<id>/close``: close it (as ``DELETE`` in the API)."""
    DeploymentItem().delete(deployment_id)
    return redirect(url_for("dashboard.deployment", deployment_id=deployment_id, notice="closed"))
