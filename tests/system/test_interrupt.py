"""Ctrl-C in ``compute`` or ``map`` cancels the jobs it was waiting for (a real process,
a real SIGINT)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

from tests.stack import Stack

CALLER = """
import signal, sys, threading, time
import client_sdk
from client_sdk import compute_this

# Ctrl-C raises KeyboardInterrupt here even when the tests run in the background of a
# shell, whose children start with SIGINT ignored (and Python then leaves it so).
signal.signal(signal.SIGINT, signal.default_int_handler)

client_sdk.configure(url={url!r}, token={token!r})

@compute_this(name={name!r})
def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds

if {batched!r}:  # a call in flight first: the one below goes in a batch
    threading.Thread(target=nap.compute, args=(60,), daemon=True).start()
    time.sleep(1)
print("calling", flush=True)
try:
    {call}
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


def jobs_named(stack: Stack, name: str) -> list[dict]:
    """The stack's jobs whose name starts with ``name``, oldest first."""
    listing = requests.get(
        stack.api("/jobs"), params={"limit": 1000}, headers=stack.headers(), timeout=30
    ).json()
    return [job for job in reversed(listing["jobs"]) if (job["name"] or "").startswith(name)]


def interrupt(
    stack: Stack,
    tmp_path: Path,
    name: str,
    *,
    batched: bool = False,
    call: str = "nap.compute(61)",
    jobs: int = 1,
    running: int = 1,
) -> list[dict]:
    """Run a process making ``call``; once it has ``jobs`` jobs named ``name`` and
    ``running`` of them run, Ctrl-C it. Its jobs afterwards, oldest first."""
    script = tmp_path / "caller.py"
    source = CALLER.format(url=stack.url, token=stack.token, name=name, batched=batched, call=call)
    script.write_text(textwrap.dedent(source))
    caller = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            mine = jobs_named(stack, name)
            if len(mine) == jobs and sum(job["status"] == "running" for job in mine) == running:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the job did not start: {jobs_named(stack, name)}")
        caller.send_signal(signal.SIGINT)
        output, _ = caller.communicate(timeout=30)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert caller.returncode == 3, output
    assert "interrupted" in output
    return jobs_named(stack, name)


def wait_for_status(stack: Stack, job_id: str, status: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        now = requests.get(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30)
        if now.json()["status"] == status or time.monotonic() > deadline:
            return now.json()["status"]
        time.sleep(0.2)


def test_ctrl_c_in_compute_cancels_its_job(stack: Stack, tmp_path: Path):
    """Interrupted while ``POST /jobs?wait`` waits: the job is found by its
    Idempotency-Key and cancelled."""
    stack.wait_for_workers(2)
    (job,) = interrupt(stack, tmp_path, "interrupted-alone")
    assert wait_for_status(stack, job["id"], "cancelled") == "cancelled"


def test_ctrl_c_in_a_batched_compute_cancels_only_its_job(stack: Stack, tmp_path: Path):
    stack.wait_for_workers(2)
    other, interrupted = interrupt(
        stack, tmp_path, "interrupted-batched", batched=True, jobs=2, running=2
    )
    try:
        assert wait_for_status(stack, interrupted["id"], "cancelled") == "cancelled"
        # The other thread's call was not interrupted (its process exited meanwhile).
        assert wait_for_status(stack, other["id"], "running", timeout=0) == "running"
    finally:
        requests.post(stack.api(f"/jobs/{other['id']}/cancel"), headers=stack.headers(), timeout=30)


def test_ctrl_c_in_map_cancels_its_chunk_jobs(stack: Stack, tmp_path: Path):
    """Four one-item chunks on two workers: two run, two wait; all four are cancelled."""
    stack.wait_for_workers(2)
    chunks = interrupt(
        stack,
        tmp_path,
        "interrupted-map",
        call="nap.map([60] * 4, chunksize=1)",
        jobs=4,
        running=2,
    )
    assert [wait_for_status(stack, job["id"], "cancelled") for job in chunks] == ["cancelled"] * 4
