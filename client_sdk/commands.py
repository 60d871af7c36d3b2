"""The client side of the ``computethis`` command line: run a folder, list and manage jobs.

    computethis run analysis/ --output 'out/**' -- python train.py --epochs 3
    computethis jobs --status running
    computethis logs JOB_ID --follow

Each command talks to the gateway of ``COMPUTETHIS_URL`` / ``COMPUTETHIS_TOKEN`` /
``COMPUTETHIS_CA`` (or ``--url`` / ``--token`` / ``--ca``). This module imports only the
SDK and the standard library: it runs on users' machines, where no server code is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from client_sdk.client import Client
from client_sdk.errors import (
    ApiError,
    CommandFailed,
    ComputeThisError,
    JobCancelled,
    JobTimeout,
    RemoteError,
)
from client_sdk.folder import FolderJob, run_folder
from client_sdk.job import Job

CLIENT_COMMANDS = frozenset(
    {"run", "jobs", "status", "logs", "cancel", "delete", "download", "workers"}
)
STATUSES = ("queued", "running", "finished", "failed", "cancelled", "expired")
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
USAGE_ERROR = 2  # as argparse


class _RunParser(argparse.ArgumentParser):
    """``computethis run``'s parser: what follows the first ``--`` is the command, kept
    whole (its options are the command's, even ``-h`` or another ``--``)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        command = None
        if "--" in words:
            at = words.index("--")
            words, command = words[:at], words[at + 1 :]
        parsed, extras = super().parse_known_args(words, namespace)
        parsed.command_words = command
        return parsed, extras


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the client commands to the `computethis` parser's subcommands."""
    gateway = argparse.ArgumentParser(add_help=False)
    options = gateway.add_argument_group("gateway")
    options.add_argument("--url", help="the gateway's URL (default: $COMPUTETHIS_URL)")
    options.add_argument("--token", help="API token (default: $COMPUTETHIS_TOKEN)")
    options.add_argument("--ca", help="PEM file of the gateway's CA (default: $COMPUTETHIS_CA)")

    def add(name: str, text: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, parents=[gateway], **kwargs)

    run = add(
        "run",
        "run a folder's main.py (or COMMAND) on a worker, printing its output",
        usage="%(prog)s [FOLDER] [options] [-- COMMAND ...]",
        description="Upload FOLDER (default .), run COMMAND in it on a worker (default "
        "`python main.py`; everything after `--`, run without a shell; one word with "
        "spaces is run by `sh -c`), print its output as it comes, download its output "
        "files and exit with its exit status.",
    )
    run.__class__ = _RunParser  # the words after `--` are the command's, not ours
    run.add_argument("folder", nargs="?", default=".", metavar="FOLDER")
    many: dict[str, Any] = {"action": "append", "default": []}  # a repeatable option
    run.add_argument(
        "--output",
        **many,
        metavar="GLOB",
        help="an output file to keep (** spans "
        "folders; repeatable; default: every file the command created or changed)",
    )
    run.add_argument(
        "--env",
        **many,
        type=_env_pair,
        metavar="K=V",
        help="set K to V in the command's environment (repeatable)",
    )
    run.add_argument(
        "--exclude", **many, metavar="PATTERN", help="leave out of the upload (repeatable)"
    )
    run.add_argument(
        "--timeout", type=_positive, metavar="S", help="stop the command after S seconds"
    )
    run.add_argument("--name", help="the job's name")
    run.add_argument(
        "--ranks", type=_positive, metavar="N", help="run it on N workers at once (SPMD)"
    )
    run.add_argument("--detach", action="store_true", help="print the job id and return")
    run.add_argument(
        "--download", metavar="DIR", help="where the output files go (default ./outputs/JOB_ID/)"
    )

    jobs = add("jobs", "list your jobs, newest first")
    jobs.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    jobs.add_argument("--limit", type=_positive, default=50, help="at most N jobs (default 50)")
    jobs.add_argument("--json", action="store_true", help="print the jobs' JSON")

    status = add("status", "show a job's status")
    status.add_argument("job_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the job's JSON")

    logs = add("logs", "print what a job printed")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--follow", action="store_true", help="print live until the job ends")

    for name, text in (
        ("cancel", "cancel a queued or running job"),
        ("delete", "cancel a job if needed, then delete it and its result"),
    ):
        add(name, text).add_argument("job_id", metavar="ID")

    download = add("download", "download a folder job's output files")
    download.add_argument("job_id", metavar="ID")
    download.add_argument("dest", nargs="?", metavar="DIR", help="default ./outputs/ID/")

    workers = add("workers", "list the cluster's workers and their load")
    workers.add_argument("--json", action="store_true", help="print the workers' JSON")


def run_client_command(args: argparse.Namespace) -> int | None:
    """Run args.command if it is a client command; its exit code; None if it is not one."""
    if args.command not in CLIENT_COMMANDS:
        return None
    name = f"computethis {args.command}"
    try:
        client = Client(args.url, args.token, args.ca)
        return _HANDLERS[args.command](client, args)
    except ApiError as exc:
        job_id = getattr(args, "job_id", None)
        if exc.status == 404 and job_id is not None:
            return _note(f"{name}: no job {job_id}")
        return _note(f"{name}: {exc.message or exc}")
    except (ComputeThisError, ValueError) as exc:
        return _note(f"{name}: {exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `computethis jobs | head`: the reader is gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush does not fail again
        return 1


def _run(client: Client, args: argparse.Namespace) -> int:
    """``computethis run``: start the job, stream its output, download its outputs."""
    command: list[str] | str | None = args.command_words or None
    if command is not None and len(command) == 1 and any(c.isspace() for c in command[0]):
        command = command[0]  # one word with spaces: a shell command line
    if not Path(args.folder).is_dir():
        return _note(f"computethis run: {args.folder} is not a folder", USAGE_ERROR)
    try:
        job = run_folder(
            args.folder,
            command,
            outputs=args.output,
            timeout=args.timeout,
            env=dict(args.env),
            exclude=args.exclude,
            name=args.name,
            ranks=args.ranks,
            client=client,
        )
    except OSError as exc:  # no main.py, or the folder went away
        return _note(f"computethis run: {exc}", USAGE_ERROR)
    if args.detach:
        print(job.id, flush=True)
        return 0
    _note(f"job {job.id}")
    try:
        return _follow_to_end(job, Path(args.download or Path("outputs") / job.id))
    except KeyboardInterrupt:
        job.cancel()
        _note(f"cancelled job {job.id}")
        return EXIT_INTERRUPTED


def _follow_to_end(job: FolderJob, dest: Path) -> int:
    """Print the job's output as it comes, wait for its end, download its outputs;
    the command's exit status."""
    with contextlib.closing(job.follow_logs()) as lines:
        for line in lines:
            sys.stdout.write(line)
            sys.stdout.flush()
    code = 0
    try:
        job.result()
    except CommandFailed as exc:
        code = exc.returncode if exc.returncode is not None else 1
        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N
        _note(f"computethis run: job {job.id} exited with status {exc.returncode}")
    except JobTimeout as exc:
        code = EXIT_TIMEOUT
        _note(f"computethis run: job {job.id} timed out: {exc.remote_message}")
    except JobCancelled:
        _note(f"computethis run: job {job.id} was cancelled")
        return EXIT_INTERRUPTED
    except RemoteError as exc:
        _note(f"computethis run: job {job.id} failed: {exc.type}: {exc.remote_message}")
        return 1
    try:
        written = job.download(dest)
    except (ComputeThisError, OSError, ValueError) as exc:
        _note(f"computethis run: could not download the outputs of job {job.id}: {exc}")
        return code or 1
    if written:
        _note(f"{len(written)} file{'s' if len(written) != 1 else ''} in {dest}")
    return code


def _jobs(client: Client, args: argparse.Namespace) -> int:
    """``computethis jobs``: a table of the caller's jobs, newest first."""
    params = {"status": args.status, "limit": args.limit}
    jobs = client.transport.request("GET", "/jobs", params=params).json()["jobs"]
    jobs.sort(key=lambda job: job.get("created_at") or "", reverse=True)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    rows = [
        [*(job.get(key) for key in ("id", "kind", "name", "status"))]
        + [_local_time(job.get("created_at")), _duration(job.get("duration"))]
        for job in jobs
    ]
    _table(["ID", "KIND", "NAME", "STATUS", "CREATED", "DURATION"], rows)
    return 0


def _status(client: Client, args: argparse.Namespace) -> int:
    """``computethis status ID``: the job's main fields, one ``key: value`` a line."""
    info = Job(args.job_id, client=client).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):  # the error: its type and message
            value = f"{value.get('type', 'Error')}: {value.get('message', '')}"
        print(f"{key}: {_text(value)}")
    return 0


def _logs(client: Client, args: argparse.Namespace) -> int:
    """``computethis logs ID``: what the job printed; with ``--follow``, live."""
    job = Job(args.job_id, client=client)
    if not args.follow:
        sys.stdout.write(job.logs())
        return 0
    with contextlib.closing(job.follow_logs()) as lines:
        for line in lines:
            sys.stdout.write(line)
            sys.stdout.flush()
    return 0


def _cancel(client: Client, args: argparse.Namespace) -> int:
    print(Job(args.job_id, client=client).cancel())
    return 0


def _delete(client: Client, args: argparse.Namespace) -> int:
    Job(args.job_id, client=client).delete()
    print(f"deleted {args.job_id}")
    return 0


def _download(client: Client, args: argparse.Namespace) -> int:
    """``computethis download ID [DIR]``: the job's output files, written under DIR."""
    dest = Path(args.dest or Path("outputs") / args.job_id)
    written = FolderJob(args.job_id, client=client).download(dest)
    for path in written:
        print(path)
    if not written:
        _note(f"job {args.job_id} kept no output files")
    return 0


def _workers(client: Client, args: argparse.Namespace) -> int:
    """``computethis workers``: each worker's state and load."""
    body = client.transport.request("GET", "/workers").json()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    if "workers" not in body:  # an older gateway shows their details to the admin only
        print(f"{body.get('count', '?')} workers (details for the admin token only)")
        return 0
    rows = []
    for worker in body["workers"]:
        busy = worker.get("busy")
        if busy is None and "current_job" in worker:
            busy = worker["current_job"] is not None
        memory = worker.get("memory")
        rows.append(
            [
                worker.get("address"),
                worker.get("name"),
                None if busy is None else ("busy" if busy else "idle"),
                worker.get("cpu"),
                None if memory is None else f"{memory / 2**20:.0f}",
                worker.get("jobs_completed"),
            ]
        )
    _table(["ADDRESS", "NAME", "STATE", "CPU %", "MEMORY (MiB)", "JOBS DONE"], rows)
    return 0


_HANDLERS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "run": _run,
    "jobs": _jobs,
    "status": _status,
    "logs": _logs,
    "cancel": _cancel,
    "delete": _delete,
    "download": _download,
    "workers": _workers,
}


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print ``rows`` under ``headers`` in plain aligned columns (``-`` for a missing value)."""
    lines = [list(headers), *([_text(value) for value in row] for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _local_time(iso: str | None) -> str | None:
    """An ISO UTC time from the gateway as local ``YYYY-MM-DD HH:MM:SS``."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str | None:
    """``4.2s``, ``3m04s`` or ``2h05m``."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _note(text: str, code: int = 1) -> int:
    """Tell the user ``text`` on stderr (stdout carries the command's output); ``code``."""
    print(text, file=sys.stderr, flush=True)
    return code


def _env_pair(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _positive(text: str) -> float:
    """A number over 0 (an int if written as one)."""
    try:
        value = int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value
