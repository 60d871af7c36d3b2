"""``func.map`` through the real stack: chunk jobs, order, per-item failures, progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from client_sdk import RemoteError, SerializationError, compute_this
from tests.stack import Stack
from tests.system.conftest import WORKERS

pytestmark = pytest.mark.usefixtures("sdk")


class ItemError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"item {code} failed")
        self.code = code


@compute_this
def square(x):
    return x * x


@compute_this
def fails_on_sevens(x):
    """Raises ItemError for every x ending in 7."""
    if x % 10 == 7:
        raise ItemError(x)
    return x


@compute_this
def slow_early_failure(x):
    """Item 5 fails after a pause; item 60 fails at once (in a later chunk)."""
    if x == 5:
        time.sleep(1.0)
        raise KeyError("late but first")
    if x == 60:
        raise ItemError(60)
    return x


def job_ids(stack: Stack) -> set[str]:
    """Ids of all jobs on the stack (newest first, up to 1000 per page)."""
    ids: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = requests.get(
            stack.api("/jobs"), params=params, headers=stack.headers(), timeout=30
        ).json()
        ids.update(job["id"] for job in page["jobs"])
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def new_jobs(stack: Stack, before: set[str]) -> list[dict]:
    return [
        requests.get(stack.api(f"/jobs/{job_id}"), headers=stack.headers(), timeout=30).json()
        for job_id in job_ids(stack) - before
    ]


def test_many_items_keep_input_order_in_few_jobs(sdk: Stack):
    before = job_ids(sdk)
    assert square.map(range(10_000)) == [x * x for x in range(10_000)]
    created = new_jobs(sdk, before)
    assert 1 <= len(created) <= 4 * WORKERS
    assert all(job["status"] == "finished" for job in created)
    assert all(job["name"].startswith("square map:") for job in created)


def test_return_exceptions_puts_each_failure_in_its_place():
    results = fails_on_sevens.map(range(100), return_exceptions=True)
    for x, value in enumerate(results):
        if x % 10 == 7:
            assert type(value) is ItemError and value.code == x
            assert "fails_on_sevens" in value.remote_traceback
        else:
            assert value == x


def test_first_failed_item_in_input_order_is_raised_as_its_original_type():
    with pytest.raises(ItemError) as caught:
        fails_on_sevens.map(range(100), chunksize=10)
    assert caught.value.code == 7
    # Item 60 (a later chunk) fails first in time; item 5 is first in input order.
    with pytest.raises(KeyError, match="late but first"):
        slow_early_failure.map(range(100), chunksize=10)


def test_unpicklable_exception_and_value_fail_only_their_item():
    @compute_this
    def awkward(x):
        if x == 1:
            raise TwoArgError(1, 2)
        if x == 2:
            return (i for i in range(3))
        return x

    results = awkward.map(range(4), return_exceptions=True)
    assert results[0] == 0 and results[3] == 3
    assert isinstance(results[1], RemoteError) and results[1].type == "TwoArgError"
    assert "1 and 2" in str(results[1])
    assert isinstance(results[2], SerializationError) and "generator" in str(results[2])


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def test_generator_input_is_consumed_lazily_and_in_order(sdk: Stack):
    pulled = []

    def numbers():
        for n in range(1000):
            pulled.append(n)
            yield n

    before = job_ids(sdk)
    assert square.map(numbers()) == [x * x for x in range(1000)]
    assert pulled == list(range(1000))
    assert len(new_jobs(sdk, before)) < 40


def test_chunksize_one_runs_one_job_per_item(sdk: Stack):
    before = job_ids(sdk)
    assert square.map(range(12), chunksize=1) == [x * x for x in range(12)]
    created = new_jobs(sdk, before)
    assert len(created) == 12
    assert {job["worker"] for job in created} and all(job["worker"] for job in created)


def test_empty_input_creates_no_job(sdk: Stack):
    before = job_ids(sdk)
    assert square.map([]) == []
    assert square.map(x for x in ()) == []
    assert job_ids(sdk) == before


def test_progress_bar_counts_items_on_stderr(capfd: pytest.CaptureFixture[str]):
    assert square.map(range(500), progress=True) == [x * x for x in range(500)]
    err = capfd.readouterr().err
    assert "500/500" in err and "100%" in err and "item" in err


def test_retries_rerun_only_the_failing_item(tmp_path: Path):
    @compute_this(retries=2)
    def third_time(path):
        with open(path, "a+") as handle:
            handle.write("x")
            handle.seek(0)
            attempts = len(handle.read())
        if attempts < 3:
            raise RuntimeError("not yet")
        return attempts

    paths = [str(tmp_path / name) for name in ("a", "b")]
    assert third_time.map(paths, chunksize=2) == [3, 3]


def test_job_timeout_fails_the_items_of_its_chunk(sdk: Stack):
    @compute_this(timeout=0.5)
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    results = nap.map([0, 30], chunksize=1, return_exceptions=True)
    assert results[0] == 0
    assert isinstance(results[1], TimeoutError)
    sdk.wait_for_workers(WORKERS)  # the timed-out job's worker was restarted
