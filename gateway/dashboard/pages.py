"""The dashboard's pages, rendered on the server (Jinja, every value escaped): the
overview, the jobs list, one job, the workers. Their scripts then keep them live from
the feeds (:mod:`gateway.dashboard.feeds`)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from gateway.api.errors import ApiError
from gateway.api.outputs import run_summary
from gateway.api.ownership import own_job, visible_tenant
from gateway.dashboard import queries
from gateway.dashboard.feeds import overview_data
from gateway.dashboard.filters import job_filter, page_cursors
from gateway.services import services
from gateway.store import FINISHED, FOLDER, JOB_ID, KINDS, STATUSES

NOTICES = {
    "cancelled": "The job was cancelled (its worker is restarted if it was running).",
    "deleted": "The job was deleted.",
    "rerun": "This is a new job, run again from the payload of the one you were viewing.",
}


def overview() -> Any:
    """Workers busy and idle, job counts, throughput, allocations, recent failures."""
    return render_template("dashboard/overview.html", data=overview_data(), page="overview")


def workers() -> Any:
    """Each worker: host, name, state, current job, jobs done, memory, CPU, uptime."""
    return render_template("dashboard/workers.html", data=overview_data(), page="workers")


def jobs() -> Any:
    """The jobs list: filtered, a page at a time (newest first); ``q`` finds a job by
    its id (or the start of it)."""
    wanted_id = (request.args.get("q") or "").strip().lower()
    notice = NOTICES.get(request.args.get("notice", ""))
    if wanted_id:
        if len(wanted_id) > 32 or not all(c in "0123456789abcdef" for c in wanted_id):
            raise ApiError(400, "invalid_parameter", "search by a job id: up to 32 hex digits")
        db = services().store.db.connection()
        found = queries.find_ids(db, visible_tenant(), wanted_id)
        if len(found) == 1:
            return redirect(url_for("dashboard.job", job_id=found[0]))
        notice = (
            f"No job of yours has an id starting with {wanted_id}."
            if not found
            else f"Several jobs have an id starting with {wanted_id}: type more of it."
        )
    wanted = job_filter(request.args)
    before, after = page_cursors(request.args)
    db = services().store.db.connection()
    page = queries.jobs_page(db, visible_tenant(), wanted, before=before, after=after)
    kept = {
        key: value
        for key, value in request.args.items()
        if key in ("status", "kind", "name", "worker", "since", "until", "gang") and value
    }
    return render_template(
        "dashboard/jobs.html",
        page="gangs" if wanted.gang else "jobs",
        jobs=page.jobs,
        newer=url_for("dashboard.jobs", **kept, after=page.newer) if page.newer else None,
        older=url_for("dashboard.jobs", **kept, before=page.older) if page.older else None,
        live=before is None and after is None,
        args=kept,
        query=wanted_id,
        statuses=STATUSES,
        kinds=KINDS,
        notice=notice,
    )


def job(job_id: str) -> Any:
    """One job: timeline, worker, attempts, sizes, logs, error, downloads, buttons."""
    if not JOB_ID.match(job_id):
        raise ApiError(404, "job_not_found", f"no job with id {job_id[:40]!r}")
    found = own_job(job_id)
    shared = services()
    logs = ""
    if found.done:
        stored = shared.store.logs(found.id, tenant=visible_tenant()) or b""
        logs = stored.decode("utf-8", "replace")
    summary = None
    if found.kind == FOLDER and found.done:
        try:
            summary = run_summary(found)
        except ApiError:
            summary = None
    return render_template(
        "dashboard/job.html",
        page="jobs",
        job=found,
        info=found.to_json(),
        logs=logs,
        summary=summary,
        result_download=found.status == FINISHED and found.kind != FOLDER,
        notice=NOTICES.get(request.args.get("notice", "")),
    )
