"""Payload and result bytes: which go in the job's row and which in files, and the files.

Payloads and results up to ``INLINE_LIMIT`` bytes live in the job's row, committed
with it in one transaction (one commit instead of file + directory fsyncs, which is
most of a small job's cost). Larger ones are files under ``payloads/`` and
``results/``, named by job id: written to ``tmp/`` first, fsynced and renamed, so a
crash never leaves half a file behind.
"""

from __future__ import annotations

import io
import mmap
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway.store.models import JOB_ID, Outcome
from wire.limits import INLINE_LIMIT

_CHUNK = 1 << 20  # bytes of a request body read at a time
IN_MEMORY_PAYLOAD = 1 << 20  # a staged body up to this size is also kept in memory


class PayloadTooLarge(Exception):
    """The request body exceeded the configured maximum."""


class IncompleteBody(Exception):
    """The request body ended before its Content-Length (the client went away)."""


def body_chunks(stream: IO[bytes], length: int | None, max_bytes: int) -> Iterator[bytes]:
    """A request body's bytes as they arrive, ``_CHUNK`` at most at a time; no more than
    ``length`` (the Content-Length) is read. Raises :class:`PayloadTooLarge` past
    ``max_bytes`` and :class:`IncompleteBody` if it ends before ``length``."""
    size = 0
    while length is None or size < length:
        chunk = stream.read(_CHUNK if length is None else min(_CHUNK, length - size))
        if not chunk:
            if length is not None:
                raise IncompleteBody(f"the body ended after {size} of {length} bytes")
            return
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        yield chunk


@dataclass
class StagedPayload:
    """A request body received but not yet a job.

    A body up to ``INLINE_LIMIT`` bytes is only in ``data`` (``path`` is None) and is
    stored in the job's row; a larger one is in a temporary file at ``path``. Bodies up
    to ``IN_MEMORY_PAYLOAD`` bytes are kept in ``data`` either way, so they are checked
    and submitted without reading the file back.
    """

    job_id: str
    path: Path | None
    size: int
    data: bytes | None = None

    @property
    def inline(self) -> bool:
        """True when the body goes in the job's row (no file)."""
        return self.path is None

    def view(self) -> bytes | memoryview:
        """The body: ``data``, or a read-only memory map of the file (no copy)."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return map_file(self.path)


def require_in_rows(payloads: Sequence[bytes]) -> None:
    """Raise ValueError unless every payload is small enough for its job's row."""
    if any(len(payload) > INLINE_LIMIT for payload in payloads):
        raise ValueError(f"a batched payload is over {INLINE_LIMIT} bytes")


class Blobs:
    """The payload and result files under ``save_dir``; ``durable`` fsyncs them."""

    def __init__(self, save_dir: Path, *, durable: bool = True) -> None:
        self.durable = durable
        self.payload_dir = save_dir / "payloads"
        self.result_dir = save_dir / "results"
        self.tmp_dir = save_dir / "tmp"
        for directory in (self.payload_dir, self.result_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def payload_path(self, job_id: str) -> Path:
        """Where the job's payload file is (ValueError if ``job_id`` is not a job id)."""
        return self.payload_dir / _checked(job_id)

    def result_path(self, job_id: str) -> Path:
        """Where the job's result file is (ValueError if ``job_id`` is not a job id)."""
        return self.result_dir / _checked(job_id)

    # -- payloads -------------------------------------------------------------------

    def stage_payload(
        self, stream: IO[bytes], max_bytes: int, length: int | None = None
    ) -> StagedPayload:
        """Read a request body; raise if it is too large (or shorter than ``length``).

        With ``length`` (the Content-Length) no more than that is read, so ``stream``
        may be the server's raw input. A body over ``INLINE_LIMIT`` bytes goes to a
        temporary file as it arrives (made durable by :meth:`keep_payload`); a smaller
        one stays in memory until the job's row stores it.
        """
        job_id = uuid.uuid4().hex
        path = self.tmp_dir / f"{job_id}.payload"
        size = 0
        head: list[bytes] = []  # the body so far, while it is small enough to keep
        out: IO[bytes] | None = None
        try:
            for chunk in body_chunks(stream, length, max_bytes):
                size += len(chunk)
                if out is None and size > INLINE_LIMIT:
                    out = open(path, "wb")  # noqa: SIM115 - closed below
                    out.writelines(head)  # what came before this chunk
                if out is not None:
                    out.write(chunk)
                if size <= IN_MEMORY_PAYLOAD:
                    head.append(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            if out is not None:
                out.close()
        data = b"".join(head) if size <= IN_MEMORY_PAYLOAD else None
        return StagedPayload(job_id, path if out is not None else None, size, data)

    def discard(self, staged: StagedPayload) -> None:
        """Drop a staged body that will not become a job."""
        if staged.path is not None:
            staged.path.unlink(missing_ok=True)

    def keep_payload(self, staged: StagedPayload) -> None:
        """Make a staged body's file durable as the job's payload file (if it has one)."""
        if staged.path is None:
            return
        with open(staged.path, "rb") as written:
            self._sync(written)
        os.replace(staged.path, self.payload_path(staged.job_id))
        self._sync_dir(self.payload_dir)

    def payload(self, job_id: str, inline: bytes | None) -> bytes | memoryview:
        """The payload: ``inline`` (from the row), or a read-only memory map of its file.

        The map costs no copy and no memory of the gateway's own: the pages are the
        file's, in the page cache, and sending them to a worker reads them from there.
        """
        return inline if inline is not None else map_file(self.payload_path(job_id))

    # -- results --------------------------------------------------------------------

    def stage_result(self, outcome: Outcome) -> None:
        """Write a large result body to a fsynced temporary file (``result_file``) and
        let go of the body's memory; a small one stays in ``body``, for the row."""
        if (
            outcome.result_file is None
            and (outcome.ok or outcome.result_body)
            and len(outcome.body) > INLINE_LIMIT
        ):
            tmp = self.tmp_dir / f"{outcome.job_id}.{uuid.uuid4().hex[:8]}.result"
            with open(tmp, "wb") as out:
                out.write(outcome.body)
                self._sync(out)
            outcome.result_file = tmp
            outcome.result_size, outcome.body = len(outcome.body), b""

    def keep_result(self, outcome: Outcome) -> None:
        """Rename a staged result file into place (call :meth:`sync_results` after)."""
        if outcome.result_file is not None:
            os.replace(outcome.result_file, self.result_path(outcome.job_id))

    def sync_results(self) -> None:
        """Make the results renamed into place durable."""
        self._sync_dir(self.result_dir)

    def drop_staged(self, outcome: Outcome) -> None:
        """Remove the outcome's staged result file, if it has one not yet kept."""
        if outcome.result_file is not None:
            outcome.result_file.unlink(missing_ok=True)

    def result(self, job_id: str, inline: bytes | None) -> IO[bytes]:
        """The result as a file: ``inline`` (from the row) or its result file
        (FileNotFoundError if there is none)."""
        return io.BytesIO(inline) if inline is not None else open(self.result_path(job_id), "rb")

    # -- both -----------------------------------------------------------------------

    def remove(self, job_id: str) -> None:
        """Delete the job's payload and result files, if any."""
        self.payload_path(job_id).unlink(missing_ok=True)
        self.result_path(job_id).unlink(missing_ok=True)

    def _sync(self, handle: IO[bytes]) -> None:
        if self.durable:
            handle.flush()
            os.fsync(handle.fileno())

    def _sync_dir(self, directory: Path) -> None:
        if self.durable:
            sync_dir(directory)


def sync_dir(directory: Path) -> None:
    """Make the names in ``directory`` (files renamed into it) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def map_file(path: Path) -> bytes | memoryview:
    """A read-only memory map of a file, as a memoryview (bytes if it is empty)."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return b""
        return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))


def _checked(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id
