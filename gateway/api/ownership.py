"""Whose job is it: every read of jobs on a caller's behalf is checked here.

A tenant sees only its own jobs; the admin token sees every tenant's. Another
tenant's job is answered exactly like a missing one (404), so job ids leak nothing.
"""

from __future__ import annotations

from gateway.api.auth import is_admin, tenant
from gateway.api.errors import not_found
from gateway.services import services
from gateway.store import Job


def visible_tenant() -> str | None:
    """The tenant whose jobs the caller may see; None for the admin (every tenant's)."""
    return None if is_admin() else tenant()


def check_owner(job_id: str, owner: str | None) -> None:
    """404 unless the job exists (``owner`` is its tenant, None if there is no such
    job) and the caller may see it. The one place that decides."""
    seen = visible_tenant()
    if owner is None or (seen is not None and owner != seen):
        raise not_found(job_id)


def own_job(job_id: str) -> Job:
    """The caller's job, or 404."""
    job = services().store.get(job_id)
    check_owner(job_id, job.tenant if job else None)
    assert job is not None
    return job


def own_job_with_result(job_id: str) -> tuple[Job, bytes | None]:
    """Like :func:`own_job`, plus the result bytes when they are in the job's row."""
    job, result = services().store.get_with_result(job_id) or (None, None)
    check_owner(job_id, job.tenant if job else None)
    assert job is not None
    return job, result


def check_own_jobs(job_ids: list[str]) -> None:
    """404 (naming the first) unless every one of ``job_ids`` is the caller's."""
    owners = services().store.tenants(job_ids)
    for job_id in job_ids:
        check_owner(job_id, owners.get(job_id))
