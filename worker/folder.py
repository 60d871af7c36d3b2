"""Run one folder job on a Dask worker: unpack its folder into a fresh directory, run its
command there (:mod:`worker.sandbox`), and send back a zip of what it wrote.

The zip (:data:`wire.http.RUN_MEMBER`, then the output files under
:data:`wire.http.OUTPUTS_DIR`) is the job's result whether the command succeeded or
not: a failed command's outputs are kept too. The directory is removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wire.bundle import BundleError, extract_bundle
from wire.envelope import Envelope, pack
from wire.errors import error_info
from wire.http import RUN_MEMBER
from worker.live_output import LiveOutput
from worker.outputs import OutputsTooLarge, collect_outputs, snapshot
from worker.runner import announce_start, current_worker, deliver, worker_address
from worker.sandbox import Finished, run_command

JOB_ID_VARIABLE = "COMPUTETHIS_JOB_ID"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
KEPT_NOTE = "its output and files are kept: see the job's logs and outputs"


def run_folder(job_id: str, run: bytes, bundle: bytes | memoryview | None) -> memoryview:
    """Run the command of ``run`` (the job's JSON: ``bundle``, ``command``, ``outputs``,
    ``env``, ``max_outputs``) in a fresh copy of the folder ``bundle`` (a tar).

    Returns the packed envelope (as :func:`worker.runner.run_job` does): finished if
    the command exited 0, else failed with ``CommandFailed``; either way its body is
    the outputs' zip.
    """
    worker = worker_address()
    started = time.time()
    announced_done = announce_start(job_id, worker, started)
    logs = LiveOutput(job_id, current_worker())
    ran = run_in_sandbox(job_id, json.loads(run), bundle, logs, worker)
    announced_done()
    envelope = Envelope(
        ran.ok,
        worker,
        started,
        time.time(),
        ran.error,
        ran.body,
        logs.encoded(),
        result_body=bool(ran.body),
    )
    return deliver(job_id, worker, pack(envelope))


@dataclass
class SandboxRun:
    """How a command ran in its sandbox: ``ok`` (exited 0), the job's ``error`` otherwise,
    the outputs' zip (``body``, empty if there are none) and the exit status (None if
    the command never ran)."""

    ok: bool
    error: dict[str, Any] | None
    body: bytes
    returncode: int | None


def run_in_sandbox(
    job_id: str,
    spec: dict[str, Any],
    bundle: bytes | memoryview | None,
    logs: LiveOutput,
    worker: str | None,
    *,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
    on_start: Callable[[int], None] | None = None,
) -> SandboxRun:
    """Unpack ``bundle`` into a fresh directory, run ``spec``'s command there (its output
    to ``logs``; ``env`` added to the job's, ``pass_fds`` kept open in it, ``on_start``
    told its process group), zip its outputs, and remove the directory. Ends ``logs``."""
    sandbox = Path(tempfile.mkdtemp(prefix=f"computethis-{job_id[:12]}-", dir=_scratch()))
    ok, error, body, returncode = False, None, b"", None
    try:
        root = _unpack(bundle, sandbox)
        before = snapshot(root)
        variables = {
            "PYTHONUNBUFFERED": "1",  # a Python command's prints reach its logs at once
            # `python` in a shell command is the worker's interpreter too
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            **spec.get("env", {}),
            **(env or {}),
            JOB_ID_VARIABLE: job_id,
        }
        finished = run_command(
            spec["command"],
            root,
            env=variables,
            on_output=logs.write,
            pass_fds=pass_fds,
            on_start=on_start,
        )
        returncode = finished.returncode
        body = _outputs_zip(root, sandbox / "outputs.zip", spec, before, finished)
        ok = finished.returncode == 0
        if not ok:
            error = _command_failed(finished)
    except OutputsTooLarge as exc:
        error = error_info("OutputsTooLarge", str(exc))
    except BundleError as exc:
        error = error_info("InvalidBundle", f"{exc}; upload the folder again")
    except FileNotFoundError as exc:
        error = _not_found(spec, exc)
    except Exception as exc:  # the sandbox itself failed: say what, on which worker
        error = error_info(
            type(exc).__name__,
            f"the folder job could not run on worker {worker}: {exc}",
            traceback.format_exc(),
        )
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
        logs.end()
    return SandboxRun(ok, error, body, returncode)


class MissingBundle(FileNotFoundError):
    """The job's bundle was deleted before it ran."""


def _unpack(bundle: bytes | memoryview | None, sandbox: Path) -> Path:
    if bundle is None:
        raise MissingBundle("bundle")
    tar = sandbox / "bundle.tar"
    tar.write_bytes(bundle)
    root = sandbox / "work"
    root.mkdir()
    extract_bundle(tar, root)
    tar.unlink()
    return root


def _outputs_zip(
    root: Path, path: Path, spec: dict[str, Any], before: dict, finished: Finished
) -> bytes:
    files = collect_outputs(
        root,
        path,
        patterns=spec.get("outputs") or (),
        before=before,
        max_bytes=spec.get("max_outputs"),
    )
    summary = {
        "returncode": finished.returncode,
        "timed_out": finished.timed_out,
        "duration": round(finished.duration, 6),
        "stdout": finished.stdout,
        "stderr": finished.stderr,
        "files": [{"path": name, "size": size} for name, size in files],
    }
    with zipfile.ZipFile(path, "a", allowZip64=True) as archive:
        archive.writestr(zipfile.ZipInfo(RUN_MEMBER, ZIP_DATE), json.dumps(summary))
    return path.read_bytes()


def _command_failed(finished: Finished) -> dict[str, Any]:
    code = finished.returncode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    last = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or [""]
    info = error_info(
        "CommandFailed",
        f"the command {how}{': ' + last[0][:500] if last[0] else ''}; {KEPT_NOTE}",
    )
    info["returncode"] = code
    return info


def _not_found(spec: dict[str, Any], exc: FileNotFoundError) -> dict[str, Any]:
    if isinstance(exc, MissingBundle):
        return error_info(
            "BundleMissing",
            f"the folder (bundle {spec.get('bundle')}) was deleted before the job ran; "
            "upload it and run again",
        )
    command = spec.get("command")
    program = command[0] if isinstance(command, list) and command else command
    return error_info(
        "CommandNotFound",
        f"cannot run {program!r} on this worker ({exc.strerror or exc}): install it on "
        "the workers, or run it through 'python' or a script in the folder",
    )


def _scratch() -> str | None:
    """Where sandboxes go: the Dask worker's local directory (else the system's temp)."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except ValueError:
        return None
