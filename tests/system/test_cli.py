"""The client commands of the ``computethis`` CLI (run, jobs, status, logs, cancel, delete,
download, workers), run as real processes against the shared real stack."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.stack import COMPUTETHIS, Stack

TIMEOUT = 120
MAIN = textwrap.dedent(
    """
    import time
    from pathlib import Path
    for i in range(3):
        print(f"line {i}", flush=True)
        time.sleep(1)
    Path("out").mkdir()
    Path("out/result.csv").write_text("a,b\\n1,2\\n")
    """
)
EXPECTED_CSV = "a,b\n1,2\n"


def env_for(stack: Stack, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "COMPUTETHIS_URL": stack.url,
        "COMPUTETHIS_TOKEN": stack.token,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def cli(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``computethis ARGS...`` in ``cwd``, pointed at the stack (killed if it overruns)."""
    return subprocess.run(
        [*COMPUTETHIS, *args],
        cwd=cwd,
        env=env_for(stack),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def job_status(stack: Stack, job_id: str) -> str:
    reply = requests.get(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)
    reply.raise_for_status()
    return reply.json()["status"]


def wait_for_status(stack: Stack, job_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := job_status(stack, job_id)) != wanted:
        assert time.monotonic() < deadline, f"job {job_id} is {status}, not {wanted}"
        time.sleep(0.1)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A folder whose main.py prints lines slowly, then writes out/result.csv."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "main.py").write_text(MAIN)
    return folder


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    """A folder without main.py."""
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "README.txt").write_text("no main.py here\n")
    return folder


def test_run_streams_the_output_live_and_downloads_the_outputs(stack: Stack, demo: Path):
    cwd = demo.parent
    errors = cwd / "stderr.txt"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [*COMPUTETHIS, "run", "demo"],
            cwd=cwd,
            env=env_for(stack),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            # printed while the command still runs (it sleeps 1 s after each line)
            assert first == "line 0\n" and process.poll() is None
            rest = process.stdout.read()
            code = process.wait(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0, errors.read_text()
    assert rest.startswith("line 1\nline 2\n")
    lines = errors.read_text().splitlines()
    assert lines[0].startswith("job ")
    job_id = lines[0].split()[1]
    result = cwd / "outputs" / job_id / "out" / "result.csv"
    assert result.read_text() == EXPECTED_CSV
    assert f"1 file in {Path('outputs') / job_id}" in lines


def test_the_words_after_dashes_are_the_command_and_its_exit_status_is_ours(
    stack: Stack, bare: Path
):
    code = "import os, sys; print(sys.argv[1:], os.environ['GREETING']); sys.exit(3)"
    run = cli(
        stack,
        bare.parent,
        "run",
        "bare",
        "--env",
        "GREETING=hi=there",
        "--",
        "python",
        "-c",
        code,
        "--epochs",
        "3",
    )
    assert run.returncode == 3, run.stderr
    assert "['--epochs', '3'] hi=there" in run.stdout
    assert "exited with status 3" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_command_killed_by_a_signal_or_timed_out_exits_as_a_shell_says(stack: Stack, bare: Path):
    killed = cli(stack, bare.parent, "run", "bare", "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr
    late = cli(stack, bare.parent, "run", "bare", "--timeout", "1", "--", "sleep", "30")
    assert late.returncode == 124, late.stderr
    assert "timed out" in late.stderr


def test_detach_then_status_logs_download_jobs_and_delete(stack: Stack, demo: Path):
    cwd = demo.parent
    started = cli(stack, cwd, "run", "--detach", "demo", "--name", "cli-detached")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    assert len(started.stdout.splitlines()) == 1 and len(job_id) == 32

    logs = cli(stack, cwd, "logs", job_id, "--follow")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "line 0\nline 1\nline 2\n"

    status = cli(stack, cwd, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["id"] == job_id and info["kind"] == "folder" and info["name"] == "cli-detached"
    wait_for_status(stack, job_id, "finished")
    lines = cli(stack, cwd, "status", job_id).stdout.splitlines()
    assert f"id: {job_id}" in lines and "status: finished" in lines

    stored = cli(stack, cwd, "logs", job_id)
    assert stored.returncode == 0 and "line 2" in stored.stdout

    download = cli(stack, cwd, "download", job_id, "fetched")
    assert download.returncode == 0, download.stderr
    path = Path("fetched") / "out" / "result.csv"
    assert download.stdout.splitlines() == [str(path)]
    assert (cwd / path).read_text() == EXPECTED_CSV
    default = cli(stack, cwd, "download", job_id)
    assert (cwd / "outputs" / job_id / "out" / "result.csv").read_text() == EXPECTED_CSV
    assert default.returncode == 0

    listing = cli(stack, cwd, "jobs", "--json", "--limit", "1000")
    assert listing.returncode == 0, listing.stderr
    assert job_id in [job["id"] for job in json.loads(listing.stdout)]
    table = cli(stack, cwd, "jobs", "--limit", "1000").stdout.splitlines()
    assert table[0].split() == ["ID", "KIND", "NAME", "STATUS", "CREATED", "DURATION"]
    row = next(line for line in table if line.startswith(job_id))
    assert "folder" in row.split() and "cli-detached" in row.split() and "finished" in row
    finished = cli(stack, cwd, "jobs", "--status", "finished", "--json")
    assert {job["status"] for job in json.loads(finished.stdout)} == {"finished"}

    deleted = cli(stack, cwd, "delete", job_id)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted {job_id}"
    gone = cli(stack, cwd, "status", job_id)
    assert gone.returncode == 1 and gone.stderr.strip() == f"computethis status: no job {job_id}"


def test_cancel_stops_a_running_job(stack: Stack, bare: Path):
    cwd = bare.parent
    started = cli(stack, cwd, "run", "bare", "--detach", "--", "sleep", "60")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    wait_for_status(stack, job_id, "running")
    cancelled = cli(stack, cwd, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "cancelled"
    assert json.loads(cli(stack, cwd, "status", job_id, "--json").stdout)["status"] == "cancelled"


def test_workers_lists_each_worker(stack: Stack, tmp_path: Path):
    stack.wait_for_workers(2)  # an earlier cancel restarts a worker
    table = cli(stack, tmp_path, "workers")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 3, table.stdout
    assert lines[0].split() == [
        "ADDRESS",
        "NAME",
        "STATE",
        "CPU",
        "%",
        "MEMORY",
        "(MiB)",
        "JOBS",
        "DONE",
    ]
    for line in lines[1:]:
        assert line.startswith(("tcp://", "tls://", "inproc://"))
        assert line.split()[2] in ("busy", "idle", "-")
    listing = cli(stack, tmp_path, "workers", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["count"] == 2


def test_usage_errors_are_one_line(stack: Stack, bare: Path):
    cwd = bare.parent
    no_main = cli(stack, cwd, "run", "bare")
    assert no_main.returncode == 2
    assert len(no_main.stderr.strip().splitlines()) == 1, no_main.stderr
    assert no_main.stderr.startswith("computethis run: ") and "main.py" in no_main.stderr
    no_folder = cli(stack, cwd, "run", "missing", "--", "true")
    assert no_folder.returncode == 2
    assert no_folder.stderr.strip() == "computethis run: missing is not a folder"
    bad_env = cli(stack, cwd, "run", "bare", "--env", "NOEQUALS", "--", "true")
    assert bad_env.returncode == 2 and "--env: expected K=V" in bad_env.stderr


def test_api_errors_are_readable(stack: Stack, tmp_path: Path):
    unknown = uuid.uuid4().hex
    missing = cli(stack, tmp_path, "status", unknown)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"computethis status: no job {unknown}"
    for args in (["jobs", "--token", "wrong"], ["workers", "--token", "wrong"]):
        refused = cli(stack, tmp_path, *args)
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"computethis {args[0]}: missing or wrong token")
        assert "Traceback" not in refused.stderr


def test_ctrl_c_cancels_the_job(stack: Stack, bare: Path):
    process = subprocess.Popen(
        [*COMPUTETHIS, "run", "bare", "--", "sleep", "60"],
        cwd=bare.parent,
        env=env_for(stack),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Python leaves SIGINT ignored if it starts so (tests run in a background shell)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=60)
        assert first.startswith("job "), first
        job_id = first.split()[1]
        wait_for_status(stack, job_id, "running")
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130
        reader.join(timeout=10)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        assert f"cancelled job {job_id}\n" in rest
        assert "Traceback" not in "".join(rest)
        assert job_status(stack, job_id) == "cancelled"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
