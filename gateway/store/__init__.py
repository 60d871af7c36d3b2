"""The durable job store: SQLite (WAL) for job records, files for large payloads and results.

Callers hold one :class:`JobStore`; what lives where:

- ``models``: the data: :class:`Job`, :class:`JobSpec`, :class:`Outcome`, the statuses.
- ``jobs``: :class:`JobStore`: creates jobs, records outcomes, cancels, expires, deletes.
- ``reads``: its queries; those that answer requests take ``tenant`` (None: every
  tenant's jobs; a name: only that tenant's, and another's job reads as a missing one).
- ``blobs``: payload and result bytes: in the job's row up to ``INLINE_LIMIT``, else
  in files; request bodies staged on their way in.
- ``bundles``: uploaded folders (tar files by SHA-256), per tenant.
- ``artifacts``: model artifacts (a framework's own format, by SHA-256), per tenant.
- ``deployments``: deployed model classes and which model job belongs to which.
- ``db``: the schema, a SQLite connection per thread, write transactions.
- ``writelock``: the lock write transactions take turns on (the recorder first).
- ``repair``: crash repair at start-up (records and files made to agree).
"""

from gateway.store.blobs import IncompleteBody, PayloadTooLarge, StagedPayload
from gateway.store.jobs import JobStore
from gateway.store.models import (
    ACTIVE,
    CANCELLED,
    DONE,
    EXPIRED,
    FAILED,
    FINISHED,
    FOLDER,
    FUNCTION,
    JOB_ID,
    KINDS,
    MODEL,
    QUEUED,
    RUNNING,
    SPMD,
    STATUSES,
    TERMINAL,
    Job,
    JobSpec,
    Outcome,
    batch_keys,
)

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "DONE",
    "EXPIRED",
    "FAILED",
    "FINISHED",
    "FOLDER",
    "FUNCTION",
    "JOB_ID",
    "KINDS",
    "MODEL",
    "SPMD",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "TERMINAL",
    "IncompleteBody",
    "Job",
    "JobSpec",
    "JobStore",
    "Outcome",
    "PayloadTooLarge",
    "StagedPayload",
    "batch_keys",
]
