"""Chunked map without I/O: apply_chunk on its own and the chunk-size rule."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import dill
import pytest

import client_sdk
from client_sdk import RemoteError, SerializationError, compute_this, configure
from client_sdk.chunk import RemoteItemError, apply_chunk
from client_sdk.mapping import (
    CHUNKS_PER_WORKER,
    MAX_CHUNK_ITEMS,
    MAX_IN_FLIGHT,
    MIN_IN_FLIGHT,
    TARGET_CHUNK_BYTES,
    auto_chunksize,
    chunk_sizes,
    estimate_item_bytes,
    in_flight_limit,
    iter_chunks,
)


class TwoArgError(Exception):
    """Cannot be pickled, whatever exception reducers are installed (tblib's rebuilds
    exceptions without __init__): its args hold a generator."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}", (i for i in range(1)))

    def __str__(self) -> str:
        return self.args[0]


def flaky_item(x):
    if x == 2:
        raise ValueError("two")
    if x == 3:
        raise TwoArgError(3, 4)
    if x == 4:
        return (i for i in range(3))  # a generator cannot be pickled
    return x * 10


@compute_this
def ident(x):
    return x


def roundtrip(value):
    return dill.loads(dill.dumps(value))


def test_apply_chunk_returns_outcomes_in_order_and_keeps_failures_per_item():
    outcomes = roundtrip(apply_chunk(flaky_item, [0, 1, 2, 3, 4, 5]))
    assert [ok for ok, _ in outcomes] == [True, True, False, False, False, True]
    assert outcomes[0] == (True, 0) and outcomes[1] == (True, 10) and outcomes[5] == (True, 50)
    two = outcomes[2][1]
    assert type(two) is ValueError and str(two) == "two"
    assert "flaky_item" in two.remote_traceback and "ValueError: two" in two.remote_traceback


def test_unpicklable_exception_becomes_remote_error_with_type_message_traceback():
    stand_in = roundtrip(apply_chunk(flaky_item, [3]))[0][1]
    assert isinstance(stand_in, RemoteItemError) and isinstance(stand_in, RemoteError)
    assert stand_in.type == "TwoArgError" and stand_in.remote_message == "3-4"
    assert "flaky_item" in stand_in.remote_traceback


def test_unpicklable_value_fails_only_its_item():
    outcomes = roundtrip(apply_chunk(flaky_item, [0, 4, 5]))
    assert outcomes[0] == (True, 0) and outcomes[2] == (True, 50)
    ok, error = outcomes[1]
    assert not ok and isinstance(error, SerializationError) and "generator" in str(error)


def test_apply_chunk_retries_a_failing_item():
    calls = []

    def twice_then_ok(x):
        calls.append(x)
        if calls.count(x) < 3:
            raise RuntimeError("not yet")
        return x

    assert apply_chunk(twice_then_ok, [7], retries=2) == [(True, 7)]
    assert calls == [7, 7, 7]
    assert apply_chunk(twice_then_ok, [8], retries=1)[0][0] is False


def test_auto_chunksize_aims_for_a_few_chunks_per_worker():
    assert auto_chunksize(1000, workers=2) == 1000 // (2 * CHUNKS_PER_WORKER)
    assert auto_chunksize(5, workers=2) == 1
    assert auto_chunksize(1, workers=8) == 1
    assert auto_chunksize(10_000, workers=2) == 1250
    # The count per worker drives it: more workers, smaller chunks.
    assert auto_chunksize(10_000, workers=10) < auto_chunksize(10_000, workers=2)


def test_auto_chunksize_caps_items_and_bytes():
    assert auto_chunksize(10_000_000, workers=2) == MAX_CHUNK_ITEMS
    assert auto_chunksize(None, workers=2) == MAX_CHUNK_ITEMS
    one_mib = float(1 << 20)
    assert auto_chunksize(10_000, workers=1, item_bytes=one_mib) == TARGET_CHUNK_BYTES // (1 << 20)
    assert auto_chunksize(10_000, workers=1, item_bytes=100 * one_mib) == 1


def test_chunk_sizes_known_length_is_constant_unknown_length_doubles_per_worker_round():
    assert list(itertools.islice(chunk_sizes(800, workers=2), 3)) == [100, 100, 100]
    sizes = list(itertools.islice(chunk_sizes(None, workers=2), 8))
    assert sizes == [1, 1, 2, 2, 4, 4, 8, 8]
    capped = list(itertools.islice(chunk_sizes(None, workers=1, item_bytes=1 << 20), 6))
    assert capped == [1, 2, 4, 8, 8, 8]


def test_iter_chunks_reads_a_generator_lazily():
    pulled = []

    def numbers():
        for n in range(100):
            pulled.append(n)
            yield n

    chunks = iter_chunks(numbers(), iter([3, 3, 100]))
    assert next(chunks) == [0, 1, 2]
    assert pulled == [0, 1, 2]
    assert next(chunks) == [3, 4, 5]
    assert len(next(chunks)) == 94
    assert next(chunks, None) is None


def test_estimate_item_bytes_and_in_flight_limit():
    assert estimate_item_bytes([]) == 0.0
    assert estimate_item_bytes([bytes([i]) * 1000 for i in range(4)]) > 1000
    assert estimate_item_bytes([(i for i in range(2))]) == 0.0
    assert in_flight_limit(1) == MIN_IN_FLIGHT
    assert in_flight_limit(1000) == MAX_IN_FLIGHT
    assert MIN_IN_FLIGHT <= in_flight_limit(4) <= MAX_IN_FLIGHT


@pytest.fixture
def default_client_restored() -> Iterator[None]:
    """The SDK's default client as it was before the test, put back after it."""
    previous = client_sdk.set_default_client(None)
    yield
    client_sdk.set_default_client(previous)


@pytest.mark.usefixtures("default_client_restored")
def test_bad_arguments_fail_before_any_network():
    configure(url="http://127.0.0.1:9")  # nothing listens there
    assert ident.map([]) == [] and ident.map(iter(())) == []
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="chunksize"):
            ident.map([1, 2], chunksize=bad)

    @compute_this
    def needs_two(a, b):
        return a + b

    with pytest.raises(TypeError, match="needs_two"):
        needs_two.map([1, 2])
