"""The computethis SDK: ``@compute_this`` runs a function on the cluster over HTTP."""

from client_sdk.collect import as_completed, gather
from client_sdk.config import configure
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
    "gather",
]
