"""The buffer-writing dill pickler: same objects back, large buffers not copied."""

from __future__ import annotations

import pickle

import dill
import numpy as np
import pytest

from client_sdk.pickling import LARGE_BUFFER, Pickled, dump_buffers
from client_sdk.serialization import JOIN_BELOW, dumps_call
from gateway.payload import check_call_payload


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
    with open(path, "rb") as body:
        check_call_payload(body)
