"""The buffer-writing dill pickler: same objects back, large buffers not copied."""

from __future__ import annotations

import mmap
import pickle

import dill
import numpy as np
import pytest

from client_sdk.pickling import LARGE_BUFFER, Pickled, dump_buffers, load_buffers
from client_sdk.serialization import JOIN_BELOW, dumps_call
from gateway.payload import InvalidPayload, check_call_payload
from wire import buffer_index


def round_trip(obj):
    return dill.loads(bytes(dump_buffers(obj)))


def test_a_large_array_is_written_as_a_view_of_its_memory():
    array = np.arange(1_000_000, dtype=np.float64)
    pickled = dump_buffers(array)
    views = [
        buffer for buffer in pickled if isinstance(buffer, memoryview) and buffer.obj is not None
    ]
    assert any(np.shares_memory(np.asarray(view), array) for view in views)
    assert len(pickled) == sum(memoryview(buffer).nbytes for buffer in pickled)
    assert len(pickled) < array.nbytes + 1000


def test_arrays_come_back_equal_and_writable():
    array = np.random.default_rng(1).random((300, 500))
    back = round_trip({"a": array, "b": [array[:2]]})
    assert np.array_equal(back["a"], array) and back["a"].flags.writeable
    assert np.array_equal(back["b"][0], array[:2])


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12).reshape(3, 4).T,  # Fortran order
        np.arange(100)[::3],  # not contiguous: pickled the usual way
        np.array([1, "x", None], dtype=object),
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),  # a subclass: dill's own way
        np.float64(2.5),
        np.zeros(0),
        np.arange(LARGE_BUFFER, dtype=np.uint8),
        np.arange(LARGE_BUFFER - 1, dtype=np.uint8),
    ],
)
def test_unusual_arrays_round_trip(value):
    back = round_trip(value)
    assert type(back) is type(value)
    np.testing.assert_array_equal(back, value)
    if isinstance(value, np.ndarray) and value.ndim == 2:
        assert back.flags.f_contiguous == value.flags.f_contiguous


def test_bytes_and_plain_objects_round_trip():
    big = bytes(range(256)) * 1000
    value = (big, bytearray(big), "text", [1, 2.0, None], {"k": (big,)})
    assert round_trip(value) == value


def test_output_is_a_standard_pickle_any_unpickler_reads():
    array = np.arange(100_000.0)
    assert np.array_equal(pickle.loads(bytes(dump_buffers(array))), array)


def test_dumps_call_joins_small_bodies_and_keeps_large_ones_as_buffers():
    small = dumps_call(np.sum, (np.arange(10),), {})
    assert isinstance(small, bytes)
    large = dumps_call(np.sum, (np.zeros(JOIN_BELOW),), {})
    assert isinstance(large, Pickled) and len(large) > JOIN_BELOW
    body = bytes(large)
    func, args, kwargs = dill.loads(body)
    assert func is np.sum and np.array_equal(args[0], np.zeros(JOIN_BELOW)) and kwargs == {}


def test_the_gateway_accepts_a_large_body(tmp_path):
    path = tmp_path / "body"
    path.write_bytes(bytes(dumps_call(np.mean, (np.ones(500_000),), {"axis": 0})))
    with open(path, "rb") as file:  # a large body is checked as a map of its file
        check_call_payload(memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)))


# -- the buffer index: large buffers read back as views ----------------------------


def indexed(obj) -> bytes:
    return bytes(dump_buffers(obj, index=True))


def backing(array: np.ndarray):
    """The object at the bottom of an array's chain of bases."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_indexed_buffers_are_views_of_the_received_memory():
    array = np.random.default_rng(2).random(300_000)
    frozen = np.arange(200_000.0)
    frozen.flags.writeable = False
    received = bytearray(indexed({"a": array, "frozen": frozen, "small": np.ones(3)}))
    back = load_buffers(memoryview(received))
    assert backing(back["a"]) is received and back["a"].flags.writeable
    assert backing(back["frozen"]) is received and not back["frozen"].flags.writeable
    assert np.array_equal(back["a"], array) and np.array_equal(back["frozen"], frozen)
    assert np.array_equal(back["small"], np.ones(3))


def test_writable_buffers_from_read_only_bytes_are_copied():
    array = np.arange(300_000.0)
    data = indexed([array, "x"])
    back = load_buffers(data)
    assert back[0].flags.writeable and isinstance(backing(back[0]), bytearray)
    back[0][0] = -1.0  # ours to change
    assert array[0] == 0.0 and back[1] == "x"


def test_any_unpickler_ignores_the_index():
    array = np.arange(300_000.0)
    data = indexed((len, (array,), {}))
    assert data.endswith(buffer_index.MAGIC)
    assert np.array_equal(pickle.loads(data)[1][0], array)
    assert np.array_equal(dill.loads(data)[1][0], array)
    check_call_payload(data)  # and the gateway accepts it


def test_small_pickles_get_no_index():
    assert not bytes(dump_buffers(np.arange(10.0), index=True)).endswith(buffer_index.MAGIC)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda spans: [(offset + 1, length) for offset, length in spans],  # not an opcode
        lambda spans: [(offset, length - 8) for offset, length in spans],  # wrong length
        lambda spans: list(reversed(spans)),  # out of order
        lambda spans: [(offset, length + (1 << 40)) for offset, length in spans],  # too long
    ],
)
def test_an_index_that_does_not_match_the_pickle_is_ignored(spoil):
    arrays = [np.arange(200_000.0), np.ones(100_000)]
    pickled = dump_buffers(arrays)
    data = bytes(pickled) + buffer_index.encode(spoil(pickled.spans))
    received = bytearray(data)
    back = load_buffers(memoryview(received))
    assert all(np.array_equal(a, b) for a, b in zip(back, arrays, strict=True))
    assert all(backing(a) is not received for a in back)  # copied: read the usual way


def test_the_gateway_rejects_junk_that_only_ends_like_an_index():
    data = indexed((len, (np.arange(300_000.0),), {}))
    with pytest.raises(InvalidPayload, match="after the end"):
        check_call_payload(data[:-20] + b"x" + data[-20:])
