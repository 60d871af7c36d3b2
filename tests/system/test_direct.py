"""Direct calls through the real stack: single function jobs handed straight to an idle
worker (gateway/dask/direct.py, worker/direct.py), the worker still running one job at
a time, and every fault ending as it does through Dask."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from client_sdk import JobCancelled, compute_this
from tests.stack import Stack, scrape_metrics, wait_until

ANSWERED = "computethis_direct_calls_answered_total"
THROUGH_DASK = "computethis_direct_calls_through_dask_total"


def _counts(stack: Stack) -> tuple[float, float]:
    metrics = scrape_metrics(stack)
    return metrics.get(ANSWERED, 0.0), metrics.get(THROUGH_DASK, 0.0)


def test_sequential_calls_are_direct_calls(sdk: Stack):
    @compute_this
    def where(x):
        from distributed import get_worker

        return x * x, get_worker().address  # as in a Dask task

    answered, through_dask = _counts(sdk)
    results = [where.compute(i) for i in range(20)]
    assert [value for value, _ in results] == [i * i for i in range(20)]
    assert all(address.startswith("tcp://") for _, address in results)
    after = _counts(sdk)
    assert after[0] - answered >= 19  # (the first may wait for a worker's first probe)
    assert after[1] == through_dask


@compute_this
def occupy(seconds):
    import time

    from distributed import get_worker

    start = time.time()
    time.sleep(seconds)
    return get_worker().address, start, time.time()


@compute_this(retries=1)  # with retries: through Dask, never a direct call
def through_dask():
    import time

    from distributed import get_worker

    return get_worker().address, time.time()


def test_while_a_direct_call_runs_dask_gives_its_worker_no_task(sdk: Stack):
    answered = _counts(sdk)[0]
    long_call = occupy.submit(3)
    time.sleep(0.5)
    worker, ran_at = through_dask.compute()  # on the other worker, at once
    address, start, end = long_call.result(timeout=60)
    assert _counts(sdk)[0] - answered == 1
    assert worker != address and ran_at < end - 1


def test_with_every_worker_in_a_direct_call_a_dask_task_waits_for_one(sdk: Stack):
    answered = _counts(sdk)[0]
    calls = [occupy.submit(1.5), occupy.submit(1.5)]  # one per worker
    time.sleep(0.3)
    worker, ran_at = through_dask.compute()
    spans = {address: (start, end) for address, start, end in (c.result(60) for c in calls)}
    assert _counts(sdk)[0] - answered == 2
    assert len(spans) == 2  # both workers were in direct calls
    assert ran_at >= spans[worker][1]  # one job at a time: it ran after the call ended


def test_cancelling_a_direct_call_restarts_its_worker_and_does_not_run_it_again(sdk: Stack):
    @compute_this
    def forever():
        import time

        time.sleep(300)

    through_dask = _counts(sdk)[1]
    job = forever.submit()
    wait_until(lambda: job.info()["status"] == "running", "the job never ran")
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result(timeout=30)
    sdk.wait_for_workers(2, timeout=60)
    assert _counts(sdk)[1] == through_dask
    assert compute_this(abs).compute(-3) == 3


def test_a_direct_call_whose_worker_dies_runs_again_through_dask(sdk: Stack, tmp_path: Path):
    marker = str(tmp_path / "died-once")

    @compute_this
    def dies_once(marker):
        import os

        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies during the call
        return "second run"

    through_dask = _counts(sdk)[1]
    assert dies_once.compute(marker) == "second run"
    assert _counts(sdk)[1] == through_dask + 1
    sdk.wait_for_workers(2, timeout=60)


@compute_this(retries=1)  # through Dask, never a direct call
def occupy_through_dask(seconds):
    import time

    from distributed import get_worker

    time.sleep(seconds)
    return get_worker().address


def test_a_single_call_just_after_a_job_through_dask_goes_through_dask_too(sdk: Stack):
    """The job sent through Dask may still be on its way to a worker that looks idle: a
    direct call there would hold it up (and a cancel of the call would restart the
    worker under it). The single call goes through Dask too, to the other worker."""
    sdk.wait_for_workers(2)
    occupy.compute(0)  # the workers are known to take direct calls
    answered, _ = _counts(sdk)
    first = occupy_through_dask.submit(1.0)
    second = occupy.submit(1.0)
    first_worker = first.result(timeout=60)
    second_worker = second.result(timeout=60)[0]
    assert _counts(sdk)[0] == answered  # not a direct call
    assert first_worker != second_worker
    assert first.info()["attempts"] == 1
    assert occupy.compute(0)  # and once that job is done, single calls are direct again
    assert _counts(sdk)[0] == answered + 1
