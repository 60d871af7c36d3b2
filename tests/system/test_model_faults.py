"""Deployments survive their worker dying and the gateway restarting (separate processes,
as in tests/system/test_faults.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client_sdk import Deployment, compute_this
from tests.system.test_faults import TOKEN, Processes, running_processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with running_processes(tmp_path) as cluster:
        yield cluster


@compute_this
class SlowCounter:
    def __init__(self, start: int) -> None:
        time.sleep(0.5)  # a load, paid again when a replica is rebuilt
        self.n = start

    def add(self, k: int, nap: float = 0.0) -> tuple[int, int]:
        time.sleep(nap)
        self.n += k
        return os.getpid(), self.n


def test_a_replica_whose_worker_dies_is_rebuilt_and_its_calls_answered(processes: Processes):
    counter = SlowCounter.deploy(0)
    first_pid, _ = counter.add.compute(1)
    jobs = [counter.add.submit(1, nap=0.3) for _ in range(8)]
    time.sleep(0.5)  # the first of them runs, the others wait for the replica
    os.kill(first_pid, signal.SIGKILL)
    answers = [job.result(timeout=120) for job in jobs]
    pids = {pid for pid, _ in answers}
    assert len(answers) == 8 and first_pid in pids and len(pids) >= 2
    rebuilt = [n for pid, n in answers if pid != first_pid]
    assert min(rebuilt) == 1  # the rebuilt replica started from the constructor again
    # Later calls go to the rebuilt replica, and it keeps its state again.
    pid, n = counter.add.compute(1)
    assert pid != first_pid and counter.add.compute(1) == (pid, n + 1)
    counter.close()


def test_a_deployment_survives_a_gateway_restart(processes: Processes):
    counter = SlowCounter.deploy(10)
    assert counter.add.compute(1)[1] == 11
    processes.restart_gateway(after=0)
    again = Deployment.from_id(counter.id)
    assert again.add.compute(1)[1] == 12  # the same replica, found from the store
    listed = requests.get(
        f"{processes.url}/api/v1/deployments",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()
    assert [item["id"] for item in listed["deployments"]] == [counter.id]
    again.close()
