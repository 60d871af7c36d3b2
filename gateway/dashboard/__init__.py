"""The dashboard: the gateway's pages for people, under ``/dashboard`` (``/`` leads
there). Sign in with a token; see jobs, workers and the cluster's load live.

- ``sessions``: sign-in with a token, the session cookie, sign-out, CSRF checks.
- ``pages``: the overview, jobs list, job and workers pages (Jinja templates).
- ``actions``: cancel, delete, run again, downloads (the REST API's own handlers).
- ``deployments``: the deployed model classes' pages, and closing one.
- ``feeds``: the live data: a server-sent-events stream per page, JSON for polling.
- ``snapshot``: the cluster and store view shared by every viewer, built once a second.
- ``queries``: the store reads behind them, bounded and keyset paginated.
- ``filters``: the jobs list's query string, checked.
- ``state``: the sessions and snapshots of one gateway process.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from typing import Any

from flask import Blueprint, Flask, Response, redirect, render_template, request, url_for

from gateway.api.errors import ApiError, error_response
from gateway.dashboard import actions, deployments, feeds, pages, sessions
from gateway.dashboard.state import EXTENSION, DashboardState

BLUEPRINT = "dashboard"
PREFIX = "/dashboard"
# Served without a session: the sign-in form, the stylesheet and scripts.
_OPEN = frozenset({f"{BLUEPRINT}.signin", f"{BLUEPRINT}.signin_post", f"{BLUEPRINT}.static"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def install_dashboard(app: Flask) -> frozenset[str]:
    """Serve the dashboard from ``app``; returns its endpoints, which the bearer-token
    check must let through (the dashboard checks its session cookie instead)."""
    state = app.extensions[EXTENSION] = DashboardState()
    blueprint = Blueprint(
        BLUEPRINT,
        __name__,
        url_prefix=PREFIX,
        template_folder="templates",
        static_folder="static",
    )
    blueprint.before_request(partial(sessions.require_session, state.sessions, _OPEN))
    blueprint.after_request(_protect)
    blueprint.register_error_handler(ApiError, _problem)
    blueprint.register_error_handler(Exception, _problem)
    blueprint.context_processor(sessions.page_globals)
    blueprint.app_template_filter("when")(_when)
    blueprint.app_template_filter("size")(_size)
    blueprint.app_template_filter("seconds")(_seconds)
    add = blueprint.add_url_rule
    add("/", "overview", pages.overview)
    add("/signin", "signin", sessions.signin_page, methods=["GET"])
    add("/signin", "signin_post", partial(sessions.signin, state.sessions), methods=["POST"])
    add("/signout", "signout", partial(sessions.signout, state.sessions), methods=["POST"])
    add("/jobs", "jobs", pages.jobs)
    add("/jobs/<string:job_id>", "job", pages.job)
    add("/jobs/<string:job_id>/cancel", "cancel", actions.cancel_job, methods=["POST"])
    add("/jobs/<string:job_id>/delete", "delete", actions.delete_job, methods=["POST"])
    add("/jobs/<string:job_id>/rerun", "rerun", actions.rerun_job, methods=["POST"])
    add("/jobs/<string:job_id>/result", "result", actions.download_result)
    add("/jobs/<string:job_id>/outputs.zip", "outputs_zip", actions.download_outputs)
    add("/jobs/<string:job_id>/outputs/<path:path>", "output", actions.download_output)
    add("/workers", "workers", pages.workers)
    add("/deployments", "deployments", deployments.deployments)
    add("/deployments/<string:deployment_id>", "deployment", deployments.deployment)
    close = deployments.close_deployment
    add("/deployments/<string:deployment_id>/close", "close_deployment", close, methods=["POST"])
    add("/feed/overview", "feed_overview", partial(feeds.poll, feeds.overview_event))
    add("/feed/overview/events", "events_overview", partial(feeds.stream, feeds.overview_event))
    add("/feed/jobs", "feed_jobs", partial(feeds.poll, feeds.jobs_event))
    add("/feed/jobs/events", "events_jobs", partial(feeds.stream, feeds.jobs_event))
    add("/feed/jobs/<string:job_id>", "feed_job", _poll_job)
    add("/feed/jobs/<string:job_id>/events", "events_job", feeds.job_stream)
    add("/<path:unknown>", "unknown", _unknown)  # the routes above match first
    app.register_blueprint(blueprint)
    app.add_url_rule("/", "index", _index)
    app.add_url_rule(PREFIX, "dashboard_root", _index)
    open_endpoints = {"index", "dashboard_root"}
    return frozenset(
        endpoint
        for endpoint in app.view_functions
        if endpoint.startswith(f"{BLUEPRINT}.") or endpoint in open_endpoints
    )


def _index() -> Any:
    """``/``: the dashboard."""
    return redirect(url_for("dashboard.overview"))


def _unknown(unknown: str) -> Any:
    """A dashboard path that is no page."""
    raise ApiError(
        404, "not_found", f"the dashboard has no page /{unknown[:80]}: start from the overview"
    )


def _poll_job(job_id: str) -> Response:
    return feeds.poll(lambda: feeds.Event.of(feeds.job_data(job_id, with_logs=True)))


def _protect(response: Response) -> Response:
    """Headers that keep the pages from being framed, sniffed or cached."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != f"{BLUEPRINT}.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _problem(exc: Exception) -> Any:
    """An error: a page saying what happened and what to do (JSON for the feeds and
    the downloads' API answers)."""
    answer = error_response(exc)
    if sessions.is_feed():
        return answer
    body = answer.get_json(silent=True) or {}
    page = render_template(
        "dashboard/problem.html",
        status=answer.status_code,
        error=body.get("error", "error"),
        message=body.get("message", "something went wrong"),
        page=None,
    )
    return (
        page,
        answer.status_code,
        {key: value for key, value in answer.headers.items() if key in ("Retry-After", "Allow")},
    )


def _when(timestamp: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None)."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _size(count: int | None) -> str:
    """Bytes, readable (``1.5 MiB``)."""
    if count is None:
        return ""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _seconds(value: float | None) -> str:
    """A duration, readable (``3.2 s``, ``4 min 5 s``, ``2 h 3 min``)."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"
