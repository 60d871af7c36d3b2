"""Unit tests for gateway.payload.check_call_payload (structure only, never unpickles)."""

from __future__ import annotations

import mmap
import pickle
import random
from pathlib import Path

import dill
import numpy as np
import pytest

from client_sdk.serialization import dumps_call
from gateway.payload import InvalidPayload, check_call_payload


def check(data: bytes) -> None:
    check_call_payload(data)


def add(a, b=0):
    return a + b


def make_closure(offset):
    def shifted(x):
        return x + offset

    return shifted


class Marker:
    """Unpickling this object would create a file (``open(path, 'w')``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# -- accepted -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param((add, (1, 2), {}), id="function"),
        pytest.param((lambda x: x * 2, (21,), {}), id="lambda"),
        pytest.param((make_closure(10), (1,), {}), id="closure"),
        pytest.param((add, (), {"a": 1, "b": 2}), id="kwargs"),
        pytest.param((np.sum, (np.arange(10),), {}), id="numpy-small"),
        pytest.param((np.sum, (np.ones((300, 300)),), {"axis": 0}), id="numpy-large"),
        pytest.param((len, (b"x" * 200_000,), {}), id="large-bytes-arg"),
        pytest.param((len, (), {"obj": b"y" * 200_000}), id="large-bytes-kwarg"),
        pytest.param((print, ("shared",) * 3, {}), id="memoized-args"),
        pytest.param((max, tuple(range(1000)), {}), id="many-args"),
    ],
)
def test_real_dill_calls_pass(call):
    check(dill.dumps(call))
    check(dill.dumps(call, protocol=dill.HIGHEST_PROTOCOL))
    check(dill.dumps(call, recurse=True))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_framed_protocol_passes(protocol: int):
    check(pickle.dumps((len, ([1, 2],), {}), protocol=protocol))
    check(dill.dumps((make_closure(1), (2,), {}), protocol=protocol))


def test_sdk_payloads_pass():
    check(dumps_call(add, (1,), {"b": 2}))
    check(dumps_call(lambda: None, (), {}))
    check(dumps_call(np.mean, (np.zeros(100_000),), {}))


def mapped(path: Path) -> memoryview:
    """The file as the gateway checks a large body: a read-only memory map."""
    with open(path, "rb") as file:
        return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))


def test_a_memory_mapped_file_passes(tmp_path: Path):
    path = tmp_path / "body"
    path.write_bytes(dill.dumps((add, (1, 2), {})))
    check_call_payload(mapped(path))


def test_any_3_tuple_passes_the_structural_check():
    # only a worker can tell whether the first item is callable
    check(pickle.dumps((1, 2, 3), protocol=4))


# -- rejected -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(42, id="int"),
        pytest.param("text", id="str"),
        pytest.param(None, id="none"),
        pytest.param([add, (1,), {}], id="list-of-3"),
        pytest.param({"f": add}, id="dict"),
        pytest.param((), id="empty-tuple"),
        pytest.param((add,), id="1-tuple"),
        pytest.param((add, (1,)), id="2-tuple"),
        pytest.param((add, (1,), {}, None), id="4-tuple"),
        pytest.param(((add, (1,), {}),), id="nested-3-tuple"),
        pytest.param([(add, (1,), {})], id="list-with-3-tuple"),
        pytest.param(add, id="bare-function"),
    ],
)
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_non_3_tuples_are_rejected(value, protocol: int):
    data = dill.dumps(value, protocol=protocol)
    with pytest.raises(InvalidPayload, match="tuple"):
        check(data)


def test_invalid_payload_is_a_value_error():
    assert issubclass(InvalidPayload, ValueError)


@pytest.mark.parametrize("data", [b"", b"\x80", b"x", b"{}", b"\x00\x00"])
def test_empty_and_tiny_bodies_are_rejected(data: bytes):
    with pytest.raises(InvalidPayload, match="not a pickle"):
        check(data)


@pytest.mark.parametrize("protocol", [0, 1])
def test_old_protocols_are_rejected(protocol: int):
    data = pickle.dumps((len, ([1],), {}), protocol=protocol)
    assert pickle.loads(data) == (len, ([1],), {})
    with pytest.raises(InvalidPayload, match="protocol 2 or newer"):
        check(data)


def test_every_truncation_is_rejected():
    data = dill.dumps((make_closure(3), (1,), {"k": "v"}))
    for end in range(len(data)):
        with pytest.raises(InvalidPayload):
            check(data[:end])


def test_truncated_large_payload_is_rejected():
    data = dill.dumps((np.sum, (np.ones((200, 200)),), {}))
    for end in (len(data) - 1, len(data) - 2, len(data) // 2, 100):
        with pytest.raises(InvalidPayload, match="not a complete pickle"):
            check(data[:end])


@pytest.mark.parametrize(
    "suffix",
    [b"x", b"\x00", b".", b"\n", pickle.dumps((len, (), {}), protocol=4)],
)
def test_trailing_bytes_are_rejected(suffix: bytes):
    data = dill.dumps((add, (1,), {})) + suffix
    with pytest.raises(InvalidPayload, match="after the end"):
        check(data)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pickletools decoding junk strings
def test_random_bytes_are_rejected():
    rng = random.Random(1234)
    for _ in range(300):
        size = rng.randrange(1, 400)
        data = bytes(rng.randrange(256) for _ in range(size))
        with pytest.raises(InvalidPayload):
            check(data)
        # also with a valid-looking protocol header, so that opcodes get parsed
        with pytest.raises(InvalidPayload):
            check(bytes([0x80, rng.choice([2, 3, 4, 5])]) + data)


def test_unknown_opcode_is_rejected():
    with pytest.raises(InvalidPayload, match="not a complete pickle"):
        check(b"\x80\x04\xff.")


def test_pickle_without_stop_is_rejected():
    data = pickle.dumps((len, (), {}), protocol=4)
    assert data.endswith(b".")
    with pytest.raises(InvalidPayload):
        check(data[:-1])


# -- never executes anything --------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, dill.dumps], ids=["pickle", "dill"])
def test_check_never_unpickles_a_passing_payload(tmp_path: Path, dumps):
    marker = tmp_path / "marker"
    data = dumps((Marker(marker), (), {}))
    check(data)  # structurally a 3-tuple: passes
    assert not marker.exists()

    # the payload really would have created the file, had it been unpickled
    loaded = pickle.loads(data)
    loaded[0].close()
    assert marker.exists()


@pytest.mark.parametrize("dumps", [pickle.dumps, dill.dumps], ids=["pickle", "dill"])
def test_check_never_unpickles_a_failing_payload(tmp_path: Path, dumps):
    marker = tmp_path / "marker"
    data = dumps(Marker(marker))
    with pytest.raises(InvalidPayload):
        check(data)
    with pytest.raises(InvalidPayload):
        check(data + b"trailing")
    with pytest.raises(InvalidPayload):
        check(data[:-3])
    assert not marker.exists()

    pickle.loads(data).close()
    assert marker.exists()
