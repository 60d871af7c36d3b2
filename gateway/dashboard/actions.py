"""What the dashboard's buttons and links do to a job: cancel, delete, run again, and
download its result or outputs.

Cancel, delete and the downloads are the REST API's own handlers, called in the
dashboard's request (whose tenant the session set): the same checks, the same
answers. Running a job again stores a new job from the stored payload, with the same
kind and options, through the same admission checks as a submission.
"""

from __future__ import annotations

import io
import json
from typing import Any

from flask import Response, redirect, url_for

from gateway.api.errors import ApiError
from gateway.api.jobs import JobCancel, JobItem
from gateway.api.outputs import JobOutputFile, JobOutputsZip
from gateway.api.ownership import own_job
from gateway.api.results import JobResult
from gateway.api.submit import admit, check_enough_workers
from gateway.services import services
from gateway.store import FOLDER, MODEL, Job, JobSpec


def cancel_job(job_id: str) -> Any:
    """``POST .../jobs/<id>/cancel``: cancel it (a job already done is left as it is)."""
    JobCancel().post(job_id)
    return redirect(url_for("dashboard.job", job_id=job_id, notice="cancelled"))


def delete_job(job_id: str) -> Any:
    """``POST .../jobs/<id>/delete``: delete a done job; an active one is cancelled."""
    answer = JobItem().delete(job_id)
    if answer.get("deleted"):
        return redirect(url_for("dashboard.jobs", notice="deleted"))
    return redirect(url_for("dashboard.job", job_id=job_id, notice="cancelled"))


def rerun_job(job_id: str) -> Any:
    """``POST .../jobs/<id>/rerun``: a new job from this one's payload; go to it."""
    job = run_again(own_job(job_id))
    return redirect(url_for("dashboard.job", job_id=job.id, notice="rerun"))


def download_result(job_id: str) -> Any:
    """``GET .../jobs/<id>/result``: a finished job's result (its dill bytes)."""
    answer = JobResult().get(job_id)
    if isinstance(answer, Response) and answer.status_code == 200:
        answer.headers.set("Content-Disposition", "attachment", filename=f"{job_id}.dill")
    return answer


def download_outputs(job_id: str) -> Any:
    """``GET .../jobs/<id>/outputs.zip``: a folder job's outputs, in one zip."""
    return JobOutputsZip().get(job_id)


def download_output(job_id: str, path: str) -> Any:
    """``GET .../jobs/<id>/outputs/<path>``: one output file of a folder job."""
    return JobOutputFile().get(job_id, path)


def run_again(job: Job) -> Job:
    """Store and submit a new job with ``job``'s payload, kind and options (for the
    same tenant); 409 when its payload is gone (expired) or its folder was deleted."""
    shared = services()
    if job.kind == MODEL:
        raise ApiError(
            409,
            "not_rerunnable",
            "a model call runs on a replica of its deployment: call the method again from "
            "your program (deployment.method.compute(...))",
        )
    try:
        payload = bytes(shared.store.read_payload(job.id))
    except (OSError, ValueError):
        payload = b""
    if not payload:
        raise ApiError(
            409,
            "payload_gone",
            f"job {job.id}'s payload is no longer stored (the job {job.status}): submit the "
            "call again from your program",
        )
    spec = JobSpec(
        tenant=job.tenant,
        name=job.name,
        timeout=job.timeout,
        retries=job.retries,
        python_version=job.python_version,
        dill_version=job.dill_version,
        kind=job.kind,
        ranks=job.ranks,
    )
    if job.kind == FOLDER:
        _check_bundle(job.tenant, payload)
    admit(spec)
    check_enough_workers(spec, len(shared.dispatcher.cluster.workers))
    staged = shared.store.stage_payload(io.BytesIO(payload), len(payload) + 1, len(payload))
    new, _ = shared.store.create(spec, staged)
    shared.metrics.submitted.inc()
    shared.dispatcher.submit(new, payload)
    return new


def _check_bundle(tenant: str, payload: bytes) -> None:
    """409 unless the folder a folder job runs in is still uploaded."""
    try:
        digest = json.loads(payload)["bundle"]
    except (ValueError, KeyError, TypeError):
        digest = None
    if not isinstance(digest, str) or not services().store.bundles.exists(tenant, digest):
        raise ApiError(
            409,
            "bundle_gone",
            "the folder this job ran in is no longer uploaded: run it again from your "
            "program (run_folder uploads it)",
        )
