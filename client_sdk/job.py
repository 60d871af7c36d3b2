"""A submitted job: its status, its result, cancelling it."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any

from client_sdk import outcomes
from client_sdk.client import Client, default_client

FOLLOW_READ = 24 * 3600.0  # seconds a followed job may print nothing
FOLLOW_BLOCK = 64 * 1024


class Job:
    """A job on a gateway. Get one from ``func.submit(...)`` or ``Job.from_id(id)``.

    Its requests go through ``client`` (a :class:`~client_sdk.client.Client`); without
    one, through the default client of the moment, as for the function that made it.
    """

    def __init__(
        self, job_id: str, info: dict[str, Any] | None = None, *, client: Client | None = None
    ) -> None:
        self.id = job_id
        self._client = client
        self._info = info or {}
        # (job JSON, result bytes) once collected by as_completed / gather
        self._outcome: outcomes.Frame | None = None

    @classmethod
    def from_id(cls, job_id: str, *, client: Client | None = None) -> Job:
        """Reattach to a job submitted earlier, possibly by another process, on the
        gateway of ``client`` (default: the default client's)."""
        return cls(job_id, client=client)

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    @property
    def client(self) -> Client:
        """The client whose gateway has the job."""
        return self._client or default_client()

    def info(self) -> dict[str, Any]:
        """The job's full status record from the gateway."""
        self._info = self.client.transport.request("GET", f"/jobs/{self.id}").json()
        return self._info

    def status(self) -> str:
        """``queued``, ``running``, ``finished``, ``failed`` or ``cancelled``."""
        return self.info()["status"]

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return its result, or raise the job's exception.

        Waits by long-polling (no sleep loop). With ``timeout``, raises
        :class:`~client_sdk.errors.ResultTimeout` if the job is not done in time; the
        job keeps running.
        """
        if self._outcome is not None:  # already collected by as_completed or gather
            return outcomes.outcome_value(self.id, *self._outcome)
        return outcomes.wait_for_result(self.client.transport, self.id, timeout)

    def logs(self) -> str:
        """What the job printed (stdout and stderr, the last 1 MiB); empty until it is done."""
        response = self.client.transport.request("GET", f"/jobs/{self.id}/logs")
        return response.content.decode("utf-8", "replace")

    def follow_logs(self) -> Iterator[str]:
        """The job's output lines (with their line ends) as it prints them; ends when the
        job ends. A job followed once done gives its stored logs."""
        reply = self.client.transport.request(
            "GET", f"/jobs/{self.id}/logs", params={"follow": 1}, stream=True, timeout=FOLLOW_READ
        )
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        finished = False
        try:
            assert reply.stream is not None
            for chunk in reply.stream.stream(FOLLOW_BLOCK, decode_content=True):
                pending += decoder.decode(chunk)
                *lines, pending = pending.split("\n")
                for line in lines:
                    yield line + "\n"
            pending += decoder.decode(b"", final=True)
            if pending:
                yield pending
            finished = True
        finally:
            reply.close(finished)

    def cancel(self, *, timeout: float = 30.0, retry_for: float | None = None) -> str:
        """Cancel the job if it is queued or running; returns its status afterwards.

        A running job's worker is restarted so it is free again. A job that already
        finished is left as it is. ``timeout`` and ``retry_for`` are the request's (see
        :meth:`client_sdk.transport.Transport.request`).
        """
        reply = self.client.transport.request(
            "POST", f"/jobs/{self.id}/cancel", timeout=timeout, retry_for=retry_for
        )
        return reply.json()["status"]

    def delete(self) -> None:
        """Cancel the job if needed, then delete it and its stored result."""
        self.cancel()
        self.client.transport.request("DELETE", f"/jobs/{self.id}")
