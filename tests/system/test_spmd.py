"""SPMD jobs through the real stack: `computethis up --workers 4`, the SDK, the REST API."""

from __future__ import annotations

import operator
import threading
import time

import numpy as np
import pytest
import requests

import client_sdk
from client_sdk import JobCancelled, JobTimeout, RemoteError, compute_this
from tests.stack import Stack
from tests.system.conftest import GANG_WORKERS, idle_workers, wait_all_idle

WORKERS = GANG_WORKERS


@compute_this(ranks=4)
def ring(comm, greeting):
    nxt, prev = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    comm.send(f"{greeting} from {comm.rank}", dest=nxt)
    return comm.recv(source=prev)


def test_the_ring(gang_stack: Stack):
    assert ring.compute("hi") == ["hi from 3", "hi from 0", "hi from 1", "hi from 2"]
    job = ring.submit("hey")
    assert job.result(timeout=60) == ["hey from 3", "hey from 0", "hey from 1", "hey from 2"]
    info = job.info()
    assert info["kind"] == "spmd" and info["ranks"] == 4


def test_the_ranks_run_on_distinct_workers_with_the_environment_set(gang_stack: Stack):
    @compute_this(ranks=4)
    def where(comm):
        import os

        from distributed import get_worker

        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
        return get_worker().address, {name: os.environ.get(name) for name in names}

    seen = where.compute()
    assert len({address for address, _ in seen}) == 4
    for rank, (_, env) in enumerate(seen):
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "4"
        assert env["LOCAL_RANK"] == str(rank)  # all on one host here
        assert env["MASTER_ADDR"] == "127.0.0.1" and int(env["MASTER_PORT"]) > 0
    assert len({env["MASTER_PORT"] for _, env in seen}) == 1


def test_every_collective_gives_its_sequential_result(gang_stack: Stack):
    @compute_this(ranks=3)
    def collectives(comm):
        r = comm.rank
        return {
            "bcast": comm.bcast("root says" if r == 0 else None, root=0),
            "scatter": comm.scatter([10, 11, 12] if r == 1 else None, root=1),
            "gather": comm.gather(r * r, root=0),
            "allgather": comm.allgather(r),
            "reduce": comm.reduce(str(r), op=operator.add, root=2),
            "allreduce": comm.allreduce(r + 1),
            "max": comm.allreduce(r, op=max),
            "barrier": comm.barrier(),
        }

    results = collectives.compute()
    for rank, got in enumerate(results):
        assert got["bcast"] == "root says"
        assert got["scatter"] == 10 + rank
        assert got["gather"] == ([0, 1, 4] if rank == 0 else None)
        assert got["allgather"] == [0, 1, 2]
        assert got["reduce"] == ("012" if rank == 2 else None)
        assert got["allreduce"] == 6 and got["max"] == 2


def test_messages_between_a_pair_arrive_in_order_and_arrays_travel(gang_stack: Stack):
    @compute_this(ranks=2)
    def pairs(comm, count):
        import numpy

        if comm.rank == 0:
            for i in range(count):
                comm.send(i, dest=1)
            comm.send(numpy.arange(1 << 20, dtype=numpy.float64), dest=1, tag=7)
            return None
        received = [comm.recv(source=0) for _ in range(count)]
        array = comm.recv(source=0, tag=7)
        return received == list(range(count)), float(array.sum()), array.dtype.str

    _, (in_order, total, dtype) = pairs.compute(500)
    assert in_order and total == float(np.arange(1 << 20, dtype=np.float64).sum())
    assert dtype == "<f8"


class RankError(Exception):
    pass


def test_a_failing_rank_fails_the_job_and_the_others_stop(gang_stack: Stack):
    @compute_this(ranks=4)
    def fails_on_two(comm):
        if comm.rank == 2:
            raise RankError("rank two gives up")
        return comm.recv(source=(comm.rank + 1) % comm.size)  # never sent: blocks

    started = time.monotonic()
    with pytest.raises(RankError) as raised:
        fails_on_two.compute()
    assert "rank 2" in str(raised.value) or any("rank 2" in n for n in raised.value.__notes__)
    assert time.monotonic() - started < 30
    wait_all_idle(gang_stack, timeout=15)  # the blocked ranks were stopped


def test_a_computing_rank_is_stopped_when_another_fails(gang_stack: Stack):
    @compute_this(ranks=2)
    def one_computes(comm):
        if comm.rank == 1:
            raise ValueError("no")
        end = time.time() + 120
        while time.time() < end:  # busy, never looks at the communicator
            pass

    with pytest.raises(ValueError):
        one_computes.compute()
    wait_all_idle(gang_stack, timeout=30)


def test_too_many_ranks_are_refused_naming_both_numbers(gang_stack: Stack):
    @compute_this(ranks=WORKERS + 1)
    def too_wide(comm):
        return comm.rank

    with pytest.raises(client_sdk.ApiError) as raised:
        too_wide.submit()
    assert raised.value.status == 409 and raised.value.error == "not_enough_workers"
    assert f"{WORKERS + 1} workers" in raised.value.message
    assert f"{WORKERS} are connected" in raised.value.message


def test_two_gangs_that_each_need_every_worker_both_complete(gang_stack: Stack):
    @compute_this(ranks=WORKERS)
    def hold(comm, seconds):
        time.sleep(seconds)
        return comm.allreduce(1)

    jobs = [hold.submit(1.0) for _ in range(3)]
    singles = [compute_this(abs).submit(-i) for i in range(6)]
    try:
        assert [job.result(timeout=60) for job in jobs] == [[WORKERS] * WORKERS] * 3
        assert [job.result(timeout=60) for job in singles] == list(range(6))
    except Exception:
        print([(job.id, job.status()) for job in jobs + singles])
        print(requests.get(gang_stack.api("/workers"), headers=gang_stack.headers()).json())
        raise


def test_cancel_stops_every_rank(gang_stack: Stack):
    @compute_this(ranks=3)
    def waits(comm):
        comm.barrier()
        time.sleep(300)

    job = waits.submit()
    deadline = time.monotonic() + 60
    while idle_workers(gang_stack) > WORKERS - 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result(timeout=30)
    wait_all_idle(gang_stack, timeout=60)


def test_a_timed_out_gang_stops_every_rank_and_is_not_retried(gang_stack: Stack):
    @compute_this(ranks=3, timeout=2, retries=2)
    def stuck(comm):
        if comm.rank == 0:
            comm.recv(source=1)  # blocked in recv: never sent
        time.sleep(300)  # computing

    started = time.monotonic()
    job = stuck.submit()
    with pytest.raises(JobTimeout):
        job.result(timeout=60)
    assert time.monotonic() - started < 30
    assert job.info()["attempts"] == 1  # a timeout is the job's answer, not a retried failure
    wait_all_idle(gang_stack, timeout=30)


def test_a_killed_rank_s_worker_fails_the_job_naming_the_rank(gang_stack: Stack):
    @compute_this(ranks=2)
    def dies(comm):
        import os

        if comm.rank == 1:
            os._exit(1)  # the worker process dies
        return comm.recv(source=1)

    with pytest.raises(RemoteError) as raised:
        dies.compute()
    assert raised.value.type == "WorkerDied" and "rank 1" in str(raised.value)
    wait_all_idle(gang_stack, timeout=60)


def test_concurrent_gangs_from_threads(gang_stack: Stack):
    @compute_this(ranks=2)
    def pair_sum(comm, x):
        return comm.allreduce(x)

    results: list = []

    def call(x: int) -> None:
        results.append(pair_sum.compute(x))

    threads = [threading.Thread(target=call, args=(x,)) for x in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == sorted([[2 * x, 2 * x] for x in range(6)])


def test_with_retries_a_failed_gang_starts_again_whole(gang_stack: Stack, tmp_path):
    marker = str(tmp_path / "failed-once")

    @compute_this(ranks=3, retries=1)
    def flaky(comm, marker):
        import os

        if comm.rank == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RankError("first attempt fails")
        return comm.allreduce(comm.rank)  # every rank of the new attempt takes part

    job = flaky.submit(marker)
    assert job.result(timeout=60) == [3, 3, 3]
    assert job.info()["attempts"] == 2
    wait_all_idle(gang_stack, timeout=15)


def test_with_retries_a_rank_s_dead_worker_restarts_the_gang(gang_stack: Stack, tmp_path):
    marker = str(tmp_path / "died-once")

    @compute_this(ranks=2, retries=1)
    def dies_once(comm, marker):
        import os

        if comm.rank == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies
        return comm.allreduce(1)

    assert dies_once.compute(marker) == [2, 2]
    wait_all_idle(gang_stack, timeout=60)


def test_retries_run_out_and_the_last_failure_is_the_job_s(gang_stack: Stack):
    @compute_this(ranks=2, retries=1)
    def always_fails(comm):
        if comm.rank == 0:
            raise RankError(f"rank zero fails on {comm.size} ranks")
        comm.recv(source=0)

    job = always_fails.submit()
    with pytest.raises(RankError, match="rank zero fails"):
        job.result(timeout=60)
    assert job.info()["attempts"] == 2
    wait_all_idle(gang_stack, timeout=15)
