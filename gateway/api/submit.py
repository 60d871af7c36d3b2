"""What ``POST /jobs`` and ``POST /batches`` share: the jobs' options, read from the
query and headers, the checks before anything is stored, and the created job's headers."""

from __future__ import annotations

from flask import request

from gateway.api import params
from gateway.api.auth import tenant
from gateway.api.errors import ApiError
from gateway.services import services
from gateway.store import FUNCTION, SPMD, Job, JobSpec
from wire.http import DILL_HEADER, JOB_HEADER, JOBS_PATH, PYTHON_HEADER

IDEMPOTENCY_HEADER = "Idempotency-Key"
MIN_TIMEOUT = 0.001  # seconds a job may run, at the least
MAX_TIMEOUT = 30 * 24 * 3600.0  # and at the most
MAX_RETRIES = 100  # re-runs of a job whose function raised
MAX_RANKS = 256  # workers one SPMD job runs on at once


def job_spec() -> JobSpec:
    """The submission's options, from its query and headers (400 if one is invalid)."""
    return JobSpec(
        tenant=tenant(),
        name=params.job_name(request.args),
        timeout=params.number(
            request.args, "timeout", default=None, low=MIN_TIMEOUT, high=MAX_TIMEOUT
        ),
        retries=params.integer(request.args, "retries", default=0, low=0, high=MAX_RETRIES),
        python_version=request.headers.get(PYTHON_HEADER),
        dill_version=request.headers.get(DILL_HEADER),
        idempotency_key=_idempotency_key(),
    )


def spmd_ranks(spec: JobSpec) -> None:
    """Make ``spec`` an SPMD job if the query asks for ``ranks`` (400 if invalid): a
    function job becomes an ``spmd`` one, a folder job stays a folder job (a program)."""
    if "ranks" not in request.args:
        return
    spec.ranks = params.integer(request.args, "ranks", default=1, low=1, high=MAX_RANKS)
    if spec.kind == FUNCTION:
        spec.kind = SPMD


def check_enough_workers(spec: JobSpec, workers: int) -> None:
    """409 when an SPMD job asks for more ranks than there are workers connected."""
    if spec.ranks is not None and spec.ranks > workers:
        raise ApiError(
            409,
            "not_enough_workers",
            f"the job needs {spec.ranks} workers at once (ranks={spec.ranks}) and {workers} "
            f"{'is' if workers == 1 else 'are'} connected: ask for at most {workers} ranks, "
            "or add workers",
        )


def admit(spec: JobSpec) -> Job | None:
    """The job the tenant already submitted with this ``Idempotency-Key``, if any;
    else check that one more job may be queued (400 for a Python the workers do not
    run, 429 for a full queue) and return None."""
    shared = services()
    existing, active = shared.store.admission(spec.tenant, spec.idempotency_key)
    if existing is not None:
        return existing
    check_python_version(spec.python_version, shared.dispatcher.cluster.python_versions)
    if active >= shared.config.max_queued:
        raise too_many_queued(shared.config.max_queued)
    return None


def check_python_version(client: str | None, workers: frozenset[str]) -> None:
    """400 unless the client's Python major.minor is one the workers run (or either is
    unknown): pickled code only loads on the same major.minor."""
    if not client or not workers:
        return
    major_minor = ".".join(client.split(".")[:2])
    if major_minor not in workers:
        raise ApiError(
            400,
            "python_version_mismatch",
            f"your Python {major_minor} cannot run on workers with Python "
            f"{', '.join(sorted(workers))}: pickled code only loads on the same Python "
            "major.minor; use that version on the client",
        )


def too_many_queued(max_queued: int, room: int | None = None) -> ApiError:
    """429: the tenant's queue is full (``room``: how many more a batch could have held)."""
    limit = f"{max_queued} queued or running jobs (see --max-queued)"
    if room is None:
        message = f"you already have {limit}; retry after some finish"
    else:
        message = (
            f"you may have {limit} and there is room for {room} more: send a smaller "
            "batch, or retry after some finish"
        )
    return ApiError(429, "too_many_queued_jobs", message, {"Retry-After": "2"})


def job_headers(job: Job) -> dict[str, str]:
    """``Location`` and the job id header of a created (or found) job."""
    # The job's URL, built directly: url_for costs ~40 us per request here, and job ids
    # are plain hex.
    return {"Location": f"{request.script_root}{JOBS_PATH}/{job.id}", JOB_HEADER: job.id}


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not params.is_idempotency_key(key):
        raise ApiError(
            400,
            "invalid_header",
            f"{IDEMPOTENCY_HEADER} must be 1 to {params.MAX_KEY} printable characters",
        )
    return key
