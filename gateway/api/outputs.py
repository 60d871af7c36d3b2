"""A folder job's outputs: what its command did (``/jobs/<id>/outputs``, a long-poll),
the files it wrote one at a time with HTTP ranges (``/jobs/<id>/outputs/<path>``), or all
in one zip (``/jobs/<id>/outputs.zip``).

They are read from the job's stored result, the zip its worker sent
(:mod:`worker.folder`): the JSON from its first member, a file's bytes straight from its
place in the zip (members are stored uncompressed), so a download resumes with
``Range`` and nothing is unpacked on the gateway.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from typing import IO, Any

from flask import Response, request
from flask_restful import Resource
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from gateway.api import params
from gateway.api.answers import expired
from gateway.api.errors import ApiError
from gateway.api.ownership import own_job, read_when_done
from gateway.services import services
from gateway.store import EXPIRED, FOLDER, Job
from gateway.waiting import Steps, answer_after
from wire.http import OUTPUTS_DIR, RUN_MEMBER

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header
_LOCAL_SIGNATURE = b"PK\x03\x04"


class JobOutputs(Resource):
    """``/jobs/<id>/outputs``."""

    def get(self, job_id: str) -> Response | tuple[dict[str, Any], int]:
        """What the command did: ``status``, ``returncode``, ``stdout``, ``stderr`` (their
        last MiB), ``files`` (path and size of each output) and ``error``. With
        ``?wait=SECONDS`` it waits that long for the job to end (``done`` says if it did)."""
        wait = params.wait(request.args, services().config.max_wait)
        return answer_after(self._steps(job_id, wait))

    @staticmethod
    def _steps(job_id: str, wait: float) -> Steps:
        job, _ = yield from read_when_done(job_id, wait, lambda job_id: (folder_job(job_id), None))
        return run_summary(job), 200


class JobOutputsZip(Resource):
    """``/jobs/<id>/outputs.zip``."""

    def get(self, job_id: str) -> Response:
        """Every output file in one zip (under ``outputs/``, with the run's JSON);
        ``Range`` resumes a cut download."""
        job = folder_job(job_id)
        stored = _stored_zip(job)
        size = stored.seek(0, os.SEEK_END)
        stored.seek(0)
        return ranged(stored, size, "application/zip", f"{job.id}.zip", job.id)


class JobOutputFile(Resource):
    """``/jobs/<id>/outputs/<path>``."""

    def get(self, job_id: str, path: str) -> Response:
        """One output file; ``Range`` resumes a cut download."""
        job = folder_job(job_id)
        stored = _stored_zip(job)
        try:
            with zipfile.ZipFile(stored) as archive:
                info = archive.getinfo(OUTPUTS_DIR + path)
        except KeyError:
            stored.close()
            raise ApiError(
                404,
                "output_not_found",
                f"job {job.id} kept no output file {path!r}: see GET .../outputs for its files",
            ) from None
        except zipfile.BadZipFile:
            stored.close()
            raise _unreadable(job) from None
        member = MemberFile(stored, info)
        name = path.rsplit("/", 1)[-1]
        return ranged(member, info.file_size, "application/octet-stream", name, job.id)


def ranged(file: IO[bytes], size: int, mimetype: str, name: str, job_id: str) -> Response:
    """An answer of the bytes of ``file`` (``size`` of them), as a download named ``name``
    that honours ``Range`` and ``If-Range`` (a job's outputs never change: its id and
    the size make the ETag)."""
    response = Response(
        wrap_file(request.environ, file), mimetype=mimetype, direct_passthrough=True
    )
    response.content_length = size
    response.headers.set("Content-Disposition", "attachment", filename=name)
    response.set_etag(f"{job_id}-{size}")
    response.cache_control.no_cache = True
    try:
        return response.make_conditional(request.environ, accept_ranges=True, complete_length=size)
    except RequestedRangeNotSatisfiable:
        file.close()
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the file has {size} bytes: ask for a range within them",
            {"Content-Range": f"bytes */{size}"},
        ) from None


def folder_job(job_id: str) -> Job:
    """The caller's job (404), which must be a folder job (400)."""
    job = own_job(job_id)
    if job.kind != FOLDER:
        raise ApiError(
            400,
            "not_a_folder_job",
            f"job {job.id} is a {job.kind} job: only folder jobs have outputs; "
            "its result is at .../result",
        )
    return job


def run_summary(job: Job) -> dict[str, Any]:
    """The JSON of ``/jobs/<id>/outputs`` (410 once expired)."""
    if job.status == EXPIRED:
        raise expired(job, services().config.result_ttl)
    summary: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "done": job.done,
        "returncode": None,
        "timed_out": False,
        "stdout": "",
        "stderr": "",
        "files": [],
        "error": job.error,
    }
    if job.result_size is None:  # not done, or ended without outputs (cancelled...)
        return summary
    with _stored_zip(job) as stored:
        try:
            with zipfile.ZipFile(stored) as archive:
                run = json.loads(archive.read(RUN_MEMBER))
        except (KeyError, zipfile.BadZipFile, ValueError):
            raise _unreadable(job) from None
    keys = ("returncode", "returncodes", "timed_out", "stdout", "stderr", "files", "duration")
    summary.update({key: run[key] for key in keys if key in run})
    return summary


def _stored_zip(job: Job) -> IO[bytes]:
    """The job's stored outputs zip, open; 409 while it runs, 404 if it kept none."""
    if job.status == EXPIRED:
        raise expired(job, services().config.result_ttl)
    if not job.done:
        raise ApiError(
            409,
            "job_not_done",
            f"job {job.id} is {job.status}: its outputs are stored when it ends; wait with "
            "GET .../outputs?wait=SECONDS",
        )
    try:
        if job.result_size is None:
            raise FileNotFoundError(job.id)
        return services().store.open_result(job.id)
    except FileNotFoundError:
        raise ApiError(
            404,
            "outputs_not_found",
            f"job {job.id} ended {job.status} without outputs"
            + (f" ({job.error['type']})" if job.error else ""),
        ) from None


def _unreadable(job: Job) -> ApiError:
    return ApiError(
        409,
        "outputs_unreadable",
        f"the stored outputs of job {job.id} cannot be read: run the job again",
    )


class MemberFile(io.RawIOBase):
    """A stored (uncompressed) zip member as a seekable read-only file: its bytes are read
    straight from their place in the zip."""

    def __init__(self, archive: IO[bytes], info: zipfile.ZipInfo) -> None:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{info.filename} is compressed")
        archive.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(archive.read(_LOCAL_HEADER.size))
        if fields[0] != _LOCAL_SIGNATURE:
            raise ValueError(f"{info.filename}: no local header at {info.header_offset}")
        name_length, extra_length = fields[-2], fields[-1]
        self._archive = archive
        self._start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        self._size = info.file_size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = min(max(base + offset, 0), self._size)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._size - self._position)
        if count <= 0:
            return 0
        self._archive.seek(self._start + self._position)
        data = self._archive.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._archive.close()
        super().close()
