"""The SDK through the real stack: `computethis up` (LocalCluster + gateway on a real port)."""

from __future__ import annotations

import inspect
import mmap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from distributed import Client

import client_sdk
from client_sdk import (
    DeferredCall,
    Job,
    JobCancelled,
    JobTimeout,
    RemoteError,
    ResultTimeout,
    SerializationError,
    compute_this,
)
from tests.system.conftest import WORKERS
from wire.envelope import RESULT_TOPIC
from wire.limits import PUSH_LIMIT

pytestmark = pytest.mark.usefixtures("sdk")


@compute_this
def square(x):
    """Square a number."""
    return x * x


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"custom failure {code}")
        self.code = code


def test_compute_returns_result_computed_on_a_worker():
    assert square.compute(2) == 4
    assert square(7).run() == 49
    assert square(3).compute() == 9


def test_decorator_forms_keep_name_doc_and_signature():
    @compute_this()
    def called(a, b=2):
        """Doc of called."""
        return a + b

    @compute_this(timeout=30, retries=1)
    def with_options(a, *, c):
        return a * c

    assert square.__name__ == "square" and square.__doc__ == "Square a number."
    assert called.__name__ == "called" and called.__doc__ == "Doc of called."
    assert str(inspect.signature(called)) == "(a, b=2)"
    assert str(inspect.signature(with_options)) == "(a, *, c)"
    assert called.compute(1) == 3
    assert with_options.compute(2, c=5) == 10


def test_deferred_call_does_no_network_and_bad_arguments_fail_locally():
    client_sdk.configure(url="http://127.0.0.1:9")  # nothing listens there
    call = square(5)
    assert isinstance(call, DeferredCall)
    with pytest.raises(TypeError, match="square"):
        square(1, 2)
    with pytest.raises(TypeError):
        square.submit()
    with pytest.raises(TypeError):
        square.compute(x=1, y=2)


def test_submit_status_result_and_reattach():
    job = square.submit(6)
    assert isinstance(job, Job) and len(job.id) == 32
    assert job.result(timeout=30) == 36
    assert job.status() == "finished"
    again = Job.from_id(job.id)
    assert again.result() == 36
    info = again.info()
    assert info["worker"].startswith("tcp://") and info["attempts"] == 1
    assert info["started_at"] and info["finished_at"] and info["python_version"]


def test_map_keeps_input_order_and_local_runs_in_process():
    assert square.map(range(20)) == [x * x for x in range(20)]
    assert square.map([]) == []
    assert square.local(9) == 81


def test_exception_arrives_as_original_type_with_remote_traceback():
    @compute_this
    def divide(a, b):
        return a / b

    with pytest.raises(ZeroDivisionError) as caught:
        divide.compute(1, 0)
    assert "division by zero" in str(caught.value)
    assert "in divide" in caught.value.remote_traceback
    assert any("Remote traceback" in note for note in caught.value.__notes__)


def test_custom_exception_class_from_caller_module_is_catchable():
    @compute_this
    def fail(code):
        raise CustomError(code)

    with pytest.raises(CustomError) as caught:
        fail.compute(42)
    assert caught.value.code == 42


def test_exception_that_cannot_be_rebuilt_becomes_remote_error():
    @compute_this
    def fail():
        class Unpicklable(Exception):
            def __reduce__(self):
                raise TypeError("no pickling")

        raise Unpicklable("local class")

    with pytest.raises(RemoteError) as caught:
        fail.compute()
    assert caught.value.type == "Unpicklable"
    assert "local class" in str(caught.value)


def test_unpicklable_result_is_a_serialization_error():
    @compute_this
    def generator():
        return (i for i in range(3))

    with pytest.raises(SerializationError, match="generator"):
        generator.compute()


def test_none_result_is_none():
    @compute_this
    def nothing():
        return None

    assert nothing.compute() is None


def test_lambdas_closures_globals_and_numpy():
    offset = 10
    add_offset = compute_this(lambda x: x + offset)
    assert add_offset.compute(5) == 15

    def make_multiplier(factor):
        @compute_this
        def multiply(x):
            return np.asarray(x) * factor

        return multiply

    result = make_multiplier(3).compute(np.arange(4))
    assert isinstance(result, np.ndarray)
    assert result.tolist() == [0, 3, 6, 9]

    @compute_this
    def sleepy():
        time.sleep(0.01)  # a module global (time) used on the worker
        return "slept"

    assert sleepy.compute() == "slept"


def test_arguments_travel_as_copies():
    @compute_this
    def mutate(items):
        items.append("worker")
        return items

    mine = [1, 2]
    assert mutate.compute(mine) == [1, 2, "worker"]
    assert mine == [1, 2]


def test_identical_calls_execute_every_time(tmp_path: Path):
    log = tmp_path / "executions.log"

    @compute_this
    def record(path):
        with open(path, "a") as handle:
            handle.write("ran\n")
        return 1

    jobs = [record.submit(str(log)) for _ in range(6)]
    assert [job.result(timeout=60) for job in jobs] == [1] * 6
    assert log.read_text().count("ran") == 6


def test_concurrent_sleep_jobs_spread_one_per_worker_without_overlap(sdk):
    sdk.wait_for_workers(WORKERS)

    @compute_this
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    jobs = [nap.submit(1.0) for _ in range(WORKERS)]
    assert [job.result(timeout=60) for job in jobs] == [1.0] * WORKERS
    infos = [job.info() for job in jobs]
    assert len({info["worker"] for info in infos}) == WORKERS

    more = [nap.submit(0.2) for _ in range(4 * WORKERS)]
    [job.result(timeout=60) for job in more]
    by_worker: dict[str, list[tuple[str, str]]] = {}
    for info in (job.info() for job in more):
        by_worker.setdefault(info["worker"], []).append((info["started_at"], info["finished_at"]))
    for spans in by_worker.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"jobs overlapped on one worker: {spans}"


def test_fifty_concurrent_callers_each_get_their_own_result():
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results[i] = square.compute(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert results == {i: i * i for i in range(50)}


def test_calls_from_one_thread_reuse_one_connection(sdk, monkeypatch):
    import urllib3.connection

    opened = []
    connect = urllib3.connection.HTTPConnection.connect

    def counting_connect(self):
        opened.append(self)
        return connect(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "connect", counting_connect)
    client_sdk.configure(url=sdk.url)  # a fresh client: no connection yet
    big = np.arange(300_000.0)  # a result stored as a file, read in one go
    for i in range(10):
        assert square.compute(i) == i * i
        assert np.array_equal(square.compute(big), big * big)
    assert len(opened) == 1


def test_jobs_submitted_together_with_different_retries_each_keep_their_own(tmp_path: Path):
    flaky = compute_this(retries=2)(fail_until_third_try)
    steady = compute_this(square.func)
    counters = [tmp_path / f"tries-{i}" for i in range(8)]
    jobs: dict[str, Job] = {}

    def submit(i: int) -> None:
        jobs[f"flaky{i}"] = flaky.submit(str(counters[i]))
        jobs[f"steady{i}"] = steady.submit(i)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for i in range(8):
        assert jobs[f"flaky{i}"].result(timeout=60) == 3
        assert jobs[f"steady{i}"].result(timeout=60) == i * i


def fail_until_third_try(path: str) -> int:
    from pathlib import Path

    counter = Path(path)
    tries = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(tries))
    if tries < 3:
        raise RuntimeError(f"try {tries} fails")
    return tries


def test_result_timeout_leaves_job_running_then_result_arrives():
    @compute_this
    def nap(seconds):
        time.sleep(seconds)
        return "awake"

    job = nap.submit(1.5)
    with pytest.raises(ResultTimeout):
        job.result(timeout=0.2)
    assert job.status() in ("queued", "running")
    assert job.result(timeout=30) == "awake"


def test_job_timeout_stops_the_job_and_frees_the_worker():
    @compute_this(timeout=1)
    def forever():
        time.sleep(600)

    started = time.monotonic()
    with pytest.raises(JobTimeout) as caught:
        forever.compute()
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 30
    # The restarted worker takes new work: every worker answers again.
    assert square.map(range(4 * WORKERS)) == [x * x for x in range(4 * WORKERS)]


def test_cancel_running_job():
    @compute_this
    def forever():
        time.sleep(600)

    job = forever.submit()
    deadline = time.monotonic() + 30
    while job.status() != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel() == "cancelled"
    with pytest.raises(JobCancelled):
        job.result(timeout=10)
    assert square.map(range(4 * WORKERS)) == [x * x for x in range(4 * WORKERS)]


def test_cancel_of_finished_job_keeps_it():
    job = square.submit(3)
    assert job.result(timeout=30) == 9
    assert job.cancel() == "finished"
    assert job.result() == 9


def test_retries_rerun_a_failing_job(tmp_path: Path):
    counter = tmp_path / "attempts"

    @compute_this(retries=2)
    def flaky(path):
        with open(path, "a+") as handle:
            handle.write("x")
            handle.seek(0)
            attempts = len(handle.read())
        if attempts < 3:
            raise RuntimeError("not yet")
        return "third time lucky"

    job = flaky.submit(str(counter))
    assert job.result(timeout=60) == "third time lucky"
    assert counter.read_text() == "xxx"


def test_distribute_challenge_import_path():
    from distribute_challenge import compute_this as challenge_decorator

    assert challenge_decorator is compute_this


def test_job_output_is_captured_and_served():
    @compute_this
    def chatty(n):
        import sys

        for i in range(n):
            print(f"line {i}")
        print("to stderr", file=sys.stderr)
        return n

    job = chatty.submit(3)
    assert job.result(timeout=30) == 3
    assert job.logs() == "line 0\nline 1\nline 2\nto stderr\n"

    @compute_this
    def chatty_failure():
        print("about to fail")
        raise ValueError("failed after printing")

    failing = chatty_failure.submit()
    with pytest.raises(ValueError):
        failing.result(timeout=30)
    assert failing.logs() == "about to fail\n"


def test_huge_output_keeps_the_last_mebibyte():
    @compute_this
    def flood():
        for i in range(40_000):
            print(f"{i:08d}" + "x" * 40)
        return "done"

    job = flood.submit()
    assert job.result(timeout=60) == "done"
    logs = job.logs()
    assert logs.startswith("[earlier output cut]")
    assert logs.endswith(f"{39_999:08d}" + "x" * 40 + "\n")
    assert len(logs.encode()) <= (1 << 20) + 100


def test_large_array_argument_and_result_round_trip():
    @compute_this
    def double(array):
        return array * 2

    data = np.arange(2_500_000, dtype=np.float64)  # 20 MB: scattered to a worker, not inlined
    result = double.compute(data)
    assert result.shape == data.shape and result.dtype == data.dtype
    assert np.array_equal(result, data * 2)


def test_large_arrays_arrive_as_views_of_the_received_bytes(sdk):
    """Neither the worker nor the SDK copies a large array out of the bytes it received."""
    # With a worker busy (an earlier test's job), Dask may run the job on the other one
    # and copy the payload over to it: then the worker's copy is a new bytearray.
    sdk.wait_until_idle()
    sdk.wait_for_workers(WORKERS)

    def backing(array):
        """The object at the bottom of an array's chain of bases."""
        base = array
        while isinstance(base, np.ndarray):
            base = base.base
        return base.obj if isinstance(base, memoryview) else base

    @compute_this
    def describe(array):
        # a view of the memory Dask received the payload in, not a bytearray copy
        received_in = type(backing(array)).__name__
        array += 1  # writable, as with any unpickled array
        return received_in, array

    data = np.arange(2_500_000, dtype=np.float64)
    received_in, result = describe.compute(data)
    assert received_in == "ndarray"  # Dask's receive buffer
    assert np.array_equal(result, data + 1) and result.flags.writeable
    assert isinstance(backing(result), mmap.mmap)  # the SDK's own buffer for the reply


def test_timeout_of_one_job_does_not_disturb_another(sdk):
    sdk.wait_for_workers(WORKERS)

    @compute_this
    def steady(seconds):
        time.sleep(seconds)
        return "steady finished"

    @compute_this(timeout=1)
    def stuck():
        time.sleep(600)

    other = steady.submit(3)
    doomed = stuck.submit()
    with pytest.raises(JobTimeout):
        doomed.result(timeout=60)
    assert other.result(timeout=60) == "steady finished"
    assert other.info()["attempts"] == 1


def test_small_results_are_pushed_and_large_ones_fetched(sdk):
    """Through Dask (a job with retries is never a direct call), a small outcome reaches
    the gateway inside a Dask event (no fetch from the worker afterwards); for a larger
    one the event asks the gateway to fetch it; a failure is announced by the scheduler.
    All arrive whole."""
    small = compute_this(lambda n: "x" * n, retries=1).submit(10)
    large = compute_this(lambda n: "x" * n, retries=1).submit(PUSH_LIMIT * 4)
    failing = compute_this(lambda: 1 / 0, retries=1).submit()
    assert small.result(timeout=60) == "x" * 10
    assert large.result(timeout=60) == "x" * (PUSH_LIMIT * 4)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=60)
    scheduler = requests.get(sdk.api("/health"), timeout=10).json()["scheduler"]
    with Client(scheduler, timeout=30) as client:
        events = {event["job"]: event for _, event in client.get_events(RESULT_TOPIC)}
    assert len(events[small.id]["envelope"]) <= PUSH_LIMIT
    assert events[large.id]["fetch"] is True and "envelope" not in events[large.id]
    assert events[failing.id]["erred"] is True
