"""A submitted job: its status, its result, cancelling it."""

from __future__ import annotations

import time
from typing import Any

from client_sdk import transport
from client_sdk.errors import ApiError, JobCancelled, ResultTimeout
from client_sdk.serialization import loads_result, rebuild_exception

POLL_WAIT = 30.0  # seconds per long-poll request


class Job:
    """A job on the gateway. Get one from ``func.submit(...)`` or ``Job.from_id(id)``."""

    def __init__(self, job_id: str, info: dict[str, Any] | None = None) -> None:
        self.id = job_id
        self._info = info or {}
        # (job JSON, result bytes) once collected by as_completed / gather
        self._outcome: tuple[dict[str, Any], bytes | memoryview] | None = None

    @classmethod
    def from_id(cls, job_id: str) -> Job:
        """Reattach to a job submitted earlier, possibly by another process."""
        return cls(job_id)

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def info(self) -> dict[str, Any]:
        """The job's full status record from the gateway."""
        self._info = transport.request("GET", f"/jobs/{self.id}").json()
        return self._info

    def status(self) -> str:
        """``queued``, ``running``, ``finished``, ``failed`` or ``cancelled``."""
        return self.info()["status"]

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return its result, or raise the job's exception.

        Waits by long-polling (no sleep loop). With ``timeout``, raises
        :class:`ResultTimeout` if the job is not done in time; the job keeps running.
        """
        if self._outcome is not None:  # already collected by as_completed or gather
            return self.outcome_of(*self._outcome)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = (
                POLL_WAIT
                if deadline is None
                else max(0.0, min(POLL_WAIT, deadline - time.monotonic()))
            )
            response = transport.request(
                "GET", f"/jobs/{self.id}/result", params={"wait": f"{wait:.3f}"}, timeout=wait + 30
            )
            done, value = self.read_outcome(response)
            if done:
                return value
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"job {self.id} not done after {timeout} s; it keeps running")

    def logs(self) -> str:
        """What the job printed (stdout and stderr, the last 1 MiB); empty until it is done."""
        response = transport.request("GET", f"/jobs/{self.id}/logs")
        return response.content.decode("utf-8", "replace")

    def read_outcome(self, response: transport.Reply) -> tuple[bool, Any]:
        """``(True, result)`` if the response carries the result; raises the job's error
        if it failed or was cancelled; ``(False, None)`` if it is not done yet."""
        if response.headers.get("Content-Type", "").startswith("application/octet-stream"):
            return True, loads_result(response.content)
        body = response.json()
        if body.get("status") in ("cancelled", "failed"):
            self.outcome_of(body)  # raises the job's error
        return False, None

    def outcome_of(self, info: dict[str, Any], result: bytes | memoryview = b"") -> Any:
        """The result of a done job from its JSON and result bytes, or raise its error."""
        refusal = info.get("refusal")
        if refusal:
            raise ApiError(refusal["status"], refusal["error"], refusal["message"])
        if info.get("status") == "cancelled":
            raise JobCancelled(f"job {self.id} was cancelled")
        if info.get("status") == "failed":
            raise rebuild_exception(info)
        return loads_result(result)

    def cancel(self, *, timeout: float = 30.0, retry_for: float | None = None) -> str:
        """Cancel the job if it is queued or running; returns its status afterwards.

        A running job's worker is restarted so it is free again. A job that already
        finished is left as it is. ``timeout`` and ``retry_for`` are the request's (see
        :func:`client_sdk.transport.request`).
        """
        reply = transport.request(
            "POST", f"/jobs/{self.id}/cancel", timeout=timeout, retry_for=retry_for
        )
        return reply.json()["status"]

    def delete(self) -> None:
        """Cancel the job if needed, then delete it and its stored result."""
        self.cancel()
        transport.request("DELETE", f"/jobs/{self.id}")
