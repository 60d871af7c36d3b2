"""The computethis SDK: ``@compute_this`` runs a function on the cluster over HTTP.

Modules, from the user's side down; each imports only modules further down (checked
by ``tests/unit/test_layout.py``):

- ``decorator``: ``@compute_this``, :class:`RemoteFunction`, :class:`DeferredCall`.
- ``models`` (the challenge's ``NpuModel`` and ``@artifacts``), ``deployment``
  (:class:`Deployment`: a class deployed once, its methods called many times),
  ``adapters`` (``DMatrix`` arguments), ``artifact_formats`` (models in their own format).
- ``mapping`` (``map``: items in chunk jobs), ``collect`` (:func:`as_completed`,
  :func:`gather`).
- ``job``: :class:`Job`, one job on a gateway; ``folder``: :func:`run_folder` and
  :class:`FolderJob` (a command run in an uploaded folder).
- ``client``: :class:`Client` (one gateway: settings, connections, coalescer) and the
  default client (:func:`configure`, :func:`default_client`, :func:`set_default_client`).
- ``coalesce``: concurrent ``compute`` calls posted together, in groups.
- ``bulk_submit`` (``submit_many``: jobs posted in slices), ``abandon`` (the jobs of a
  caller that gave up are cancelled), ``outcomes`` (reading jobs' outcomes by id).
- ``transport`` (HTTP), ``config`` (settings, from the environment), ``serialization``
  and ``pickling`` (dill), ``chunk`` (a ``map`` chunk, run on the worker), ``errors``.

Words: a *batch body* is the wire format of many calls in one request
(:mod:`wire.batch_body`); the coalescer sends a *group* of calls in one, and
``submit_many`` a *slice* of its items; ``map`` runs a *chunk* of items per job.
"""

from client_sdk.client import Client, configure, default_client, set_default_client
from client_sdk.collect import as_completed, gather
from client_sdk.decorator import DeferredCall, RemoteFunction, compute_this
from client_sdk.deployment import Deployment, RemoteClass
from client_sdk.errors import (
    ApiError,
    CommandFailed,
    ComputeThisError,
    DeserializationError,
    GatewayUnreachable,
    JobCancelled,
    JobTimeout,
    RemoteError,
    ResultTimeout,
    SerializationError,
    SizeLimitExceeded,
    UntrustedCertificate,
    WorkerDied,
)
from client_sdk.folder import FolderJob, RunResult, run_folder
from client_sdk.job import Job

__all__ = [
    "ApiError",
    "Client",
    "CommandFailed",
    "ComputeThisError",
    "DeferredCall",
    "Deployment",
    "DeserializationError",
    "FolderJob",
    "GatewayUnreachable",
    "Job",
    "JobCancelled",
    "JobTimeout",
    "RemoteError",
    "RemoteClass",
    "RemoteFunction",
    "ResultTimeout",
    "RunResult",
    "SerializationError",
    "SizeLimitExceeded",
    "UntrustedCertificate",
    "WorkerDied",
    "as_completed",
    "compute_this",
    "configure",
    "default_client",
    "gather",
    "run_folder",
    "set_default_client",
]
