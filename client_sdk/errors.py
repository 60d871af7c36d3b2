"""Exceptions the SDK raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ComputeThisError(Exception):
    """Base class of every computethis SDK error."""


class ApiError(ComputeThisError):
    """The gateway refused a request (4xx) or failed (5xx)."""

    def __init__(
        self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})  # the answer's headers (Retry-After...)


class GatewayUnreachable(ComputeThisError):
    """The gateway could not be reached, even after retrying."""


class UntrustedCertificate(GatewayUnreachable):
    """The gateway's HTTPS certificate could not be verified (set ``COMPUTETHIS_CA``)."""


class ResultTimeout(ComputeThisError, TimeoutError):
    """``Job.result(timeout=...)`` gave up waiting; the job keeps running."""


class JobCancelled(ComputeThisError):
    """The job was cancelled before it produced a result."""


class RemoteError(ComputeThisError):
    """A job failed and its exception could not be rebuilt as the original type."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = dict(error)
        self.type = error.get("type", "Error")
        self.remote_message = error.get("message", "")
        self.remote_traceback = error.get("traceback", "")
        text = f"{self.type}: {self.remote_message}"
        if self.remote_traceback:
            text += f"\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error,))


class DeserializationError(RemoteError):
    """The worker could not unpickle the call (missing module, version mismatch...)."""


class SerializationError(RemoteError):
    """The function's return value could not be pickled on the worker."""


class WorkerDied(RemoteError):
    """The worker process died while running the job, too many times."""


class JobTimeout(RemoteError, TimeoutError):
    """The job ran longer than its ``timeout`` and was stopped."""


class CommandFailed(RemoteError):
    """A folder job's command exited with a non-zero status (or was killed by a signal:
    a negative ``returncode``). Its output files are kept and can still be downloaded."""

    returncode: int | None = None
    stdout: str = ""  # the last MiB the command printed on each stream
    stderr: str = ""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.returncode = error.get("returncode")


class SizeLimitExceeded(ComputeThisError, ValueError):
    """Something to upload is over the gateway's limit; nothing was sent."""


GATEWAY_ERRORS: dict[str, type[RemoteError]] = {
    "CommandFailed": CommandFailed,
    "DeserializationError": DeserializationError,
    "SerializationError": SerializationError,
    "WorkerDied": WorkerDied,
    "TimeoutError": JobTimeout,
}
