"""Whose job is it: every read of jobs on a caller's behalf is scoped here.

A tenant sees only its own jobs; the admin token sees every tenant's. The store's reads
take the caller's tenant (``tenant=visible_tenant()``), so another tenant's job reads
exactly like a missing one and is answered 404: job ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from gateway.api.auth import is_admin, tenant
from gateway.api.errors import not_found
from gateway.services import services
from gateway.store import Job
from gateway.waiting import Wait

T = TypeVar("T")


def visible_tenant() -> str | None:
    """The tenant whose jobs the caller may see; None for the admin (every tenant's)."""
    return None if is_admin() else tenant()


def found(job_id: str, read: T | None) -> T:
    """``read`` (a scoped store read of ``job_id``), or 404 when it found nothing."""
    if read is None:
        raise not_found(job_id)
    return read


def own_job(job_id: str) -> Job:
    """The caller's job, or 404."""
    return found(job_id, services().store.get(job_id, tenant=visible_tenant()))


def own_job_with_result(job_id: str) -> tuple[Job, bytes | None]:
    """Like :func:`own_job`, plus the result bytes when they are in the job's row."""
    return found(job_id, services().store.get_with_result(job_id, tenant=visible_tenant()))


def read_when_done(
    job_id: str, wait: float, read: Callable[[str], tuple[Job, T]]
) -> Generator[Wait, None, tuple[Job, T]]:
    """A view's steps: ``read(job_id)`` (a scoped read: the job and what else the view
    needs), again once the job is done if it was not and ``wait`` allows (parked
    meanwhile, see :mod:`gateway.waiting`)."""
    with services().waiters.watch([job_id]) as mailbox:
        job, extra = read(job_id)
        if not job.done and wait:
            yield Wait.up_to(mailbox, wait)
            job, extra = read(job_id)
    return job, extra


def check_own_jobs(job_ids: list[str]) -> None:
    """404 (naming the first in request order) unless every one of ``job_ids`` is the
    caller's."""
    owners = services().store.tenants(job_ids, tenant=visible_tenant())
    for job_id in job_ids:
        found(job_id, owners.get(job_id))
