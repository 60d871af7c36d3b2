"""SPMD programs through the real stack: a folder's command on N workers at once
(`run_folder(..., ranks=N)`, `computethis run --ranks N`), connected by
`client_sdk.spmd.world()`. They share the 4-worker stack of `test_spmd.py`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

import client_sdk
from client_sdk import CommandFailed, run_folder
from client_sdk.folder import upload_bundle
from tests.stack import Stack
from tests.system.conftest import GANG_WORKERS as WORKERS
from tests.system.conftest import wait_all_idle
from tests.system.test_cli import cli
from wire.bundle import pack_folder

RING = textwrap.dedent(
    """
    import os
    from pathlib import Path
    from client_sdk import spmd

    comm = spmd.world()
    nxt, prev = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    comm.send(f"hi from {comm.rank}", dest=nxt)
    got = comm.recv(source=prev)
    assert os.environ.get("RANK", "0") == str(comm.rank)
    assert os.environ.get("WORLD_SIZE", "1") == str(comm.size)
    total = comm.allreduce(comm.rank + 1)
    print(f"rank {comm.rank} of {comm.size} got {got!r}, total {total}")
    Path("out").mkdir()
    Path("out/got.txt").write_text(got)
    """
)

FAILS = textwrap.dedent(
    """
    import sys, time
    from client_sdk import spmd

    comm = spmd.world()
    if comm.rank == 1:
        print("rank 1 gives up", file=sys.stderr)
        sys.exit(3)
    if comm.rank == 2:
        comm.recv(source=1)  # never sent: ended by rank 1's failure
    time.sleep(300)  # computing: stopped by its worker
    """
)

RAISES = textwrap.dedent(
    """
    from client_sdk import spmd

    comm = spmd.world()
    if comm.rank == 2:
        raise ValueError("rank two's data is bad")
    comm.recv(source=2)  # ended by rank 2's exception
    """
)


@pytest.fixture
def programs(tmp_path: Path) -> Path:
    folder = tmp_path / "programs"
    folder.mkdir()
    (folder / "ring.py").write_text(RING)
    (folder / "fails.py").write_text(FAILS)
    (folder / "raises.py").write_text(RAISES)
    return folder


def test_the_ring_program_runs_on_every_rank_with_outputs_per_rank(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    job = run_folder(programs, ["python", "ring.py"], ranks=WORKERS)
    result = job.result(timeout=120)
    assert result.returncodes == [0] * WORKERS and result.returncode == 0
    assert sorted(result.outputs) == [f"rank-{r}/out/got.txt" for r in range(WORKERS)]
    total = WORKERS * (WORKERS + 1) // 2
    assert f"rank 0 of {WORKERS} got 'hi from {WORKERS - 1}', total {total}" in result.stdout
    assert f"[rank 2]\nrank 2 of {WORKERS} got 'hi from 1'" in result.stdout
    assert "[rank 3]\nrank 3 of" in job.logs()
    info = job.info()
    assert info["kind"] == "folder" and info["ranks"] == WORKERS
    job.download(tmp_path / "got")
    for rank in range(WORKERS):
        text = (tmp_path / "got" / f"rank-{rank}" / "out" / "got.txt").read_text()
        assert text == f"hi from {(rank - 1) % WORKERS}"


def test_a_failing_rank_fails_the_program_naming_it_and_the_others_stop(
    gang_stack: Stack, programs: Path
):
    started = time.monotonic()
    job = run_folder(programs, ["python", "fails.py"], ranks=WORKERS)
    with pytest.raises(CommandFailed) as raised:
        job.result(timeout=60)
    assert raised.value.returncode == 3
    assert f"rank 1 of {WORKERS}" in str(raised.value) and "rank 1 gives up" in str(raised.value)
    assert time.monotonic() - started < 30
    wait_all_idle(gang_stack, timeout=15)


def test_an_exception_in_one_rank_is_the_job_s_error_not_its_peers(
    gang_stack: Stack, programs: Path
):
    job = run_folder(programs, ["python", "raises.py"], ranks=3)
    with pytest.raises(CommandFailed) as raised:
        job.result(timeout=60)
    assert "rank 2 of 3" in str(raised.value), str(raised.value)
    assert "ValueError: rank two's data is bad" in str(raised.value)
    assert raised.value.returncode == 1
    wait_all_idle(gang_stack, timeout=15)


def test_computethis_run_with_ranks_prints_every_rank_and_downloads_per_rank(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    dest = tmp_path / "outputs"
    ran = cli(gang_stack, tmp_path, "run", str(programs), "--ranks", "2", "--download",
              str(dest), "--", "python", "ring.py")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "rank 0 of 2 got 'hi from 1', total 3" in ran.stdout
    assert "[rank 1]\nrank 1 of 2 got 'hi from 0', total 3" in ran.stdout
    assert (dest / "rank-1" / "out" / "got.txt").read_text() == "hi from 0"


def test_a_program_alone_is_a_world_of_one(programs: Path):
    ran = subprocess.run(
        [sys.executable, "ring.py"], cwd=programs, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert "rank 0 of 1 got 'hi from 0', total 1" in ran.stdout


def test_with_retries_a_failed_program_starts_again_on_every_rank(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    (programs / "flaky.py").write_text(
        "import os, sys\n"
        "from client_sdk import spmd\n"
        "comm = spmd.world()\n"
        "if comm.rank == 1 and not os.path.exists(os.environ['MARKER']):\n"
        "    open(os.environ['MARKER'], 'w').close()\n"
        "    sys.exit(5)\n"
        "print('sum', comm.allreduce(comm.rank))\n"
    )
    marker = str(tmp_path / "failed-once")
    job = run_folder(programs, ["python", "flaky.py"], ranks=3, retries=1, env={"MARKER": marker})
    result = job.result(timeout=60)
    assert result.returncodes == [0, 0, 0] and result.stdout.startswith("sum 3\n")
    assert job.info()["attempts"] == 2


DIES = textwrap.dedent(
    """
    import os, signal, time
    from client_sdk import spmd

    comm = spmd.world()
    if comm.rank == 1 and not os.path.exists(os.environ["MARKER"]):
        open(os.environ["MARKER"], "w").close()
        os.kill(os.getppid(), signal.SIGKILL)  # the worker running this rank dies
        time.sleep(300)  # its reaper ends this process
    print("sum", comm.allreduce(comm.rank))  # the other ranks wait here until stopped
    """
)


def test_a_program_rank_s_dead_worker_fails_the_job_naming_the_rank(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    (programs / "dies.py").write_text(DIES)
    env = {"MARKER": str(tmp_path / "died")}
    job = run_folder(programs, ["python", "dies.py"], ranks=3, env=env)
    with pytest.raises(client_sdk.RemoteError) as raised:
        job.result(timeout=60)
    assert raised.value.type == "WorkerDied" and "rank 1" in str(raised.value)
    wait_all_idle(gang_stack, timeout=60)


def test_with_retries_a_program_rank_s_dead_worker_restarts_the_gang(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    (programs / "dies.py").write_text(DIES)
    env = {"MARKER": str(tmp_path / "died-once")}
    job = run_folder(programs, ["python", "dies.py"], ranks=3, retries=1, env=env)
    result = job.result(timeout=120)
    assert result.returncodes == [0, 0, 0] and result.stdout.startswith("sum 3\n")
    assert job.info()["attempts"] == 2
    wait_all_idle(gang_stack, timeout=60)


def test_retries_without_ranks_are_refused_for_a_folder_job(
    gang_stack: Stack, programs: Path, tmp_path: Path
):
    with pytest.raises(ValueError, match="with ranks"):
        run_folder(programs, ["python", "ring.py"], retries=1)
    packed = pack_folder(programs, tmp_path / "bundle.tar", [])
    upload_bundle(client_sdk.default_client(), packed)
    reply = requests.post(
        gang_stack.api("/runs"),
        params={"retries": 1},
        json={"bundle": packed.sha256},
        headers=gang_stack.headers(),
        timeout=30,
    )
    assert reply.status_code == 400 and "ranks" in reply.json()["message"]
