"""The computethis SDK: ``@compute_this`` runs a function on the cluster over HTTP.

Modules, from the user's side down (each imports only modules below it):

- ``decorator``: ``@compute_this`` and :class:`RemoteFunction` (``compute``, ``submit``,
  ``map``, ``submit_many``), :class:`DeferredCall`.
- ``mapping`` (``map``: chunk jobs), ``bulk_submit`` (``submit_many``), ``collect``
  (:func:`as_completed`, :func:`gather`), ``chunk`` (a ``map`` chunk, on the worker).
- ``job``: :class:`Job`, one job on a gateway.
- ``client``: :class:`Client` (one gateway: settings, connections, coalescer) and the
  default client (:func:`configure`, :func:`default_client`, :func:`set_default_client`).
- ``coalesce``: concurrent ``compute`` calls posted together.
- ``abandon`` (cancel the jobs of a caller that gave up), ``outcomes`` (read jobs'
  outcomes by id), ``transport`` (HTTP), ``config`` (settings from the environment),
  ``serialization`` / ``pickling`` (dill), ``errors``.
"""

from client_sdk.client import Client, configure, default_client, set_default_client
from client_sdk.collect import as_completed, gather
from client_sdk.decorator import DeferredCall, RemoteFunction, compute_this
from client_sdk.errors import (
    ApiError,
    ComputeThisError,
    DeserializationError,
    GatewayUnreachable,
    JobCancelled,
    JobTimeout,
    RemoteError,
    ResultTimeout,
    SerializationError,
    UntrustedCertificate,
    WorkerDied,
)
from client_sdk.job import Job

__all__ = [
    "ApiError",
    "Client",
    "ComputeThisError",
    "DeferredCall",
    "DeserializationError",
    "GatewayUnreachable",
    "Job",
    "JobCancelled",
    "JobTimeout",
    "RemoteError",
    "RemoteFunction",
    "ResultTimeout",
    "SerializationError",
    "UntrustedCertificate",
    "WorkerDied",
    "as_completed",
    "compute_this",
    "configure",
    "default_client",
    "gather",
    "set_default_client",
]
