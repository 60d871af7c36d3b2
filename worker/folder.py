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
    spec = json.loads(run)
    logs = LiveOutput(job_id, current_worker())
    sandbox = Path(tempfile.mkdtemp(prefix=f"computethis-{job_id[:12]}-", dir=_scratch()))
    ok, error, body = False, None, b""
    try:
        root = _unpack(bundle, sandbox)
        before = snapshot(root)
        env = {
            "PYTHONUNBUFFERED": "1",  # a Python command's prints reach its logs at once
            # `python` in a shell command is the worker's interpreter too
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            **spec.get("env", {}),
            JOB_ID_VARIABLE: job_id,
        }
        finished = run_command(spec["command"], root, env=env, on_output=logs.write)
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
    output = logs.encoded()
    announced_done()
    envelope = Envelope(
        ok, worker, started, time.time(), error, body, output, result_body=bool(body)
    )
    return deliver(job_id, worker, pack(envelope))


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
        f"the command {how}{': ' + last[0][:500] if last[0] else ''}; its output and "
        "files are kept: see the job's logs and outputs",
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
