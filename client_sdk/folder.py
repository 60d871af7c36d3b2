"""Folder jobs: run a folder's ``main.py`` (or any command) on a worker.

    job = run_folder("analysis/", outputs=["out/**"], timeout=3600)
    res = job.result()            # RunResult: returncode, stdout, stderr, outputs
    job.download("results/")      # the output files, under results/

The folder is packed deterministically (:mod:`wire.bundle`) and uploaded once per
tenant: running an unchanged folder again uploads nothing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from client_sdk.client import Client, default_client
from client_sdk.errors import (
    ApiError,
    GatewayUnreachable,
    JobCancelled,
    ResultTimeout,
    SizeLimitExceeded,
)
from client_sdk.job import Job
from client_sdk.serialization import rebuild_exception
from wire.bundle import PackedFolder, folder_size, pack_folder
from wire.http import BUNDLE_MEDIA_TYPE, MAX_BUNDLE_HEADER

POLL_WAIT = 30.0  # seconds per long-poll of a run's outputs
DOWNLOAD_BLOCK = 1 << 20
DOWNLOAD_TRIES = 5  # requests for one file, each going on from where the last stopped


@dataclass(frozen=True)
class RunResult:
    """What a folder job's command did: its exit status, the end of its output (the last
    MiB of each stream) and the output files kept (paths relative to the folder). An
    SPMD program's (``ranks=N``) has each rank's exit status in ``returncodes``, its
    files under ``rank-<r>/``, and the other ranks' output after rank 0's, each under a
    ``[rank r]`` line."""

    returncode: int
    stdout: str
    stderr: str
    outputs: list[str]
    returncodes: list[int] | None = None


def run_folder(
    folder: str | os.PathLike[str] = ".",
    command: Sequence[str] | str | None = None,
    *,
    outputs: Iterable[str] = (),
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    exclude: Iterable[str] = (),
    name: str | None = None,
    ranks: int | None = None,
    retries: int = 0,
    client: Client | None = None,
) -> FolderJob:
    """Run ``command`` in a copy of ``folder`` on a worker; returns the job at once.

    ``command``: a list (run without a shell; ``"python"`` is the worker's interpreter)
    or a string (run by ``sh -c``); default ``python main.py``, which needs a
    ``main.py`` in the folder. ``outputs``: glob patterns of the files to keep (``**``
    spans directories); default every file the command created or changed.
    ``exclude``: names or paths left out of the upload (besides ``.git``, ``.venv``,
    ``__pycache__``...). ``ranks``: run the command on that many workers at once, an
    SPMD program whose ranks connect with :func:`client_sdk.spmd.world`; ``retries``
    (with ``ranks`` only) starts every rank again after a failed attempt.
    """
    client = client or default_client()
    root = Path(folder)
    if command is None and not (root / "main.py").is_file():
        raise FileNotFoundError(
            f"{root} has no main.py to run: add one, or pass command=[...] "
            "(e.g. ['python', 'train.py'])"
        )
    if command is not None and not isinstance(command, str):
        command = list(command)
    excludes = list(exclude)
    digest = _upload(client, root, excludes)
    if retries and ranks is None:
        raise ValueError("retries apply to SPMD programs (with ranks) only")
    params = {"name": name, "timeout": timeout, "ranks": ranks, "retries": retries or None}
    body = {"bundle": digest, "command": command, "outputs": list(outputs), "env": dict(env or {})}
    reply = client.transport.request("POST", "/runs", params=params, json_body=body)
    info = reply.json()
    return FolderJob(info["id"], info, client=client)


def _upload(client: Client, root: Path, exclude: list[str]) -> str:
    """Pack ``root`` and upload it unless the gateway has it already; its digest."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    with tempfile.TemporaryDirectory(prefix="computethis-bundle-") as scratch:
        packed = pack_folder(root, Path(scratch) / "bundle.tar", exclude)
        upload_bundle(client, packed, root, exclude)
        return packed.sha256


def upload_bundle(
    client: Client, packed: PackedFolder, root: Path | None = None, exclude: Sequence[str] = ()
) -> int:
    """Upload a packed folder unless the gateway has it already; the bytes sent (0 if it
    had it). Over the gateway's limit, nothing is sent: :class:`SizeLimitExceeded`
    names the folder's largest files (of ``root``, when given)."""
    path = f"/bundles/{packed.sha256}"
    try:
        client.transport.request("GET", path)
        return 0  # already there: nothing to upload
    except ApiError as exc:
        if exc.status != 404:
            raise
        limit = int(exc.headers.get(MAX_BUNDLE_HEADER, 0) or 0)
    if limit and packed.size > limit:
        raise SizeLimitExceeded(_too_large(root, packed, limit, list(exclude)))
    with open(packed.path, "rb") as file, _mapped(file) as data:
        reply = client.transport.request(
            "PUT",
            path,
            data=data,
            headers={"Content-Type": BUNDLE_MEDIA_TYPE},
            timeout=max(60.0, packed.size / 10e6),
        )
    if reply.json()["bundle"] != packed.sha256:
        raise ApiError(reply.status, "bundle_mismatch", "the gateway kept another bundle")
    return packed.size


@contextlib.contextmanager
def _mapped(file: Any) -> Iterator[memoryview | bytes]:
    """A file's bytes as a read-only memory view (not a copy in memory)."""
    if not os.fstat(file.fileno()).st_size:
        yield b""
        return
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            yield view
        finally:
            view.release()


def _too_large(root: Path | None, packed: PackedFolder, limit: int, exclude: list[str]) -> str:
    largest = folder_size(root, exclude)[1] if root is not None else packed.largest
    files = ", ".join(f"{path} ({size} bytes)" for path, size in largest)
    return (
        f"{root or 'the folder'} packs to {packed.size} bytes and the gateway takes at most "
        f"{limit} (--max-bundle); its largest files: {files}. Exclude some (exclude=[...]) "
        "or ask the operator to raise --max-bundle"
    )


class FolderJob(Job):
    """A folder job: a :class:`~client_sdk.job.Job` whose result is a :class:`RunResult`
    and whose output files can be listed and downloaded."""

    def outputs(self, wait: float = 0.0) -> dict[str, Any]:
        """The run's JSON from the gateway (``done``, ``returncode``, ``files``...),
        waiting up to ``wait`` seconds for the job to end."""
        params = {"wait": wait} if wait else None
        reply = self.client.transport.request(
            "GET", f"/jobs/{self.id}/outputs", params=params, timeout=wait + 30
        )
        return reply.json()

    def result(self, timeout: float | None = None) -> RunResult:  # type: ignore[override]
        """Wait for the command to end; its :class:`RunResult`. Raises
        :class:`~client_sdk.errors.CommandFailed` for a non-zero exit (its outputs are
        kept: :meth:`download` still works), :class:`~client_sdk.errors.JobTimeout`,
        :class:`~client_sdk.errors.JobCancelled`; with ``timeout``,
        :class:`~client_sdk.errors.ResultTimeout` if it is still running then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_WAIT if deadline is None else max(0.0, deadline - time.monotonic())
            run = self.outputs(wait=min(POLL_WAIT, left))
            if run["done"]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"job {self.id} did not end within {timeout:g} s")
        if run["status"] == "cancelled":
            raise JobCancelled(f"job {self.id} was cancelled")
        if run["status"] == "failed":
            error = rebuild_exception({"error": run["error"]})
            for key in ("returncode", "stdout", "stderr"):
                if run.get(key) is not None:  # a failed SPMD program has no run summary
                    setattr(error, key, run[key])
            raise error
        return RunResult(
            run["returncode"],
            run["stdout"],
            run["stderr"],
            [f["path"] for f in run["files"]],
            run.get("returncodes"),
        )

    def logs(self, follow: bool = False) -> Any:  # type: ignore[override]
        """What the command printed: the stored text once it ended; with ``follow``, an
        iterator of its output lines as it prints them, ending with the job."""
        return self.follow_logs() if follow else super().logs()

    def files(self) -> list[tuple[str, int]]:
        """``(path, size)`` of each output file kept (once the job has ended)."""
        return [(item["path"], item["size"]) for item in self.outputs()["files"]]

    def download(self, dest: str | os.PathLike[str] = ".") -> list[Path]:
        """Write the output files under ``dest`` (their paths relative to it kept);
        returns the paths written. Waits for the job to end first."""
        run = self.outputs()
        while not run["done"]:
            run = self.outputs(wait=POLL_WAIT)
        target = Path(dest)
        written = []
        for item in run["files"]:
            relative = PurePosixPath(item["path"])
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"refusing to write output {item['path']!r} outside {target}")
            path = target.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(item["path"], item["size"], path)
            written.append(path)
        return written

    def _fetch(self, name: str, size: int, path: Path) -> None:
        """Stream one output file to ``path``; a download cut short goes on from where it
        stopped (``Range``), a few times."""
        with open(path, "wb") as out:
            for _ in range(DOWNLOAD_TRIES):
                headers = {"Range": f"bytes={out.tell()}-"} if out.tell() else None
                reply = self.client.transport.request(
                    "GET", f"/jobs/{self.id}/outputs/{name}", headers=headers, stream=True
                )
                finished = False
                try:
                    assert reply.stream is not None
                    for block in reply.stream.stream(DOWNLOAD_BLOCK, decode_content=False):
                        out.write(block)
                    finished = True
                except (ProtocolError, ReadTimeoutError, OSError):
                    pass  # cut short: ask for the rest
                finally:
                    reply.close(finished)
                if out.tell() >= size:
                    return
        raise GatewayUnreachable(
            f"the download of {name} of job {self.id} stopped at {path.stat().st_size} of "
            f"{size} bytes {DOWNLOAD_TRIES} times; try again"
        )
