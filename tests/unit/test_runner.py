"""Unit tests for worker.runner, run outside any Dask worker."""

from __future__ import annotations

import io
import sys
import time

import dill
import pytest

from gateway.payload import check_call_payload
from wire.envelope import Envelope, unpack
from wire.errors import exception_info
from worker import runner
from worker.runner import (
    MAX_PICKLED_EXCEPTION,
    JobFailed,
    deserialization_error,
    load_call,
    run_job,
)

JOB = "0123456789abcdef0123456789abcdef"
MISSING_MODULE_PAYLOAD = b"\x80\x04cnonexistent_mod\nfunc\n)}\x87."


class CustomError(Exception):
    pass


class Outer:
    class InnerError(Exception):
        pass


def add(a, b=0):
    return a + b


def explode(message):
    raise CustomError(message)


def exit_with(code):
    sys.exit(code)


def raise_unpicklable():
    exc = CustomError("holds a generator")
    exc.generator = (i for i in range(3))
    raise exc


def raise_huge_exception():
    exc = CustomError("small message, big attribute")
    exc.blob = b"x" * (MAX_PICKLED_EXCEPTION + 1)
    raise exc


def raise_long_message():
    raise ValueError("x" * 100_000)


def return_generator():
    return (i for i in range(3))


def payload(func, *args, **kwargs) -> bytes:
    return dill.dumps((func, args, kwargs))


def run_failing(data: bytes) -> tuple[JobFailed, Envelope]:
    with pytest.raises(JobFailed) as info:
        run_job(JOB, data)
    return info.value, unpack(info.value.envelope)


def test_worker_address_is_none_outside_a_dask_worker():
    assert runner.worker_address() is None


def test_run_job_returns_the_pickled_value():
    before = time.time()
    envelope = unpack(run_job(JOB, payload(add, 2, b=40)))
    after = time.time()
    assert envelope.ok is True
    assert envelope.error is None
    assert envelope.worker is None
    assert before <= envelope.started <= envelope.finished <= after
    assert dill.loads(envelope.body) == 42


def test_run_job_with_lambda_closure_and_numpy():
    np = pytest.importorskip("numpy")
    offset = 5
    data = dill.dumps((lambda arr, k=0: (arr + offset).sum() + k, (np.arange(4),), {"k": 1}))
    envelope = unpack(run_job(JOB, data))
    assert envelope.ok
    assert dill.loads(envelope.body) == 0 + 1 + 2 + 3 + 4 * 5 + 1


def test_run_job_returns_none_and_complex_values():
    assert dill.loads(unpack(run_job(JOB, payload(print, file=io.StringIO()))).body) is None
    value = {"a": [1, 2.5, "x"], "b": (None, b"\x00")}
    envelope = unpack(run_job(JOB, payload(dict, value)))
    assert dill.loads(envelope.body) == value


def test_function_exception_raises_job_failed():
    failed, envelope = run_failing(payload(explode, "boom"))
    assert failed.envelope == failed.args[0]
    assert envelope.ok is False
    assert envelope.worker is None
    assert envelope.started <= envelope.finished
    error = envelope.error
    assert error["type"] == "CustomError"
    assert error["qualified_type"] == f"{__name__}.CustomError"
    assert error["message"] == "boom"
    tb = error["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "in explode" in tb
    assert "in run_job" not in tb  # the runner's own frame is skipped
    assert tb.rstrip().endswith("CustomError: boom")
    rebuilt = dill.loads(envelope.body)
    assert type(rebuilt) is CustomError
    assert rebuilt.args == ("boom",)


def test_job_failed_does_not_chain_user_exceptions():
    failed, _ = run_failing(payload(explode, "boom"))
    assert failed.__cause__ is None
    assert failed.__context__ is None
    assert failed.__suppress_context__ is False


def test_builtin_exception_is_described_without_module():
    _, envelope = run_failing(payload(int, "not a number"))
    assert envelope.error["type"] == "ValueError"
    assert envelope.error["qualified_type"] == "ValueError"
    assert "invalid literal" in envelope.error["message"]
    assert isinstance(dill.loads(envelope.body), ValueError)


@pytest.mark.parametrize("code", [0, 3])
def test_system_exit_in_user_code_is_reported(code: int):
    _, envelope = run_failing(payload(exit_with, code))
    assert envelope.error["type"] == "SystemExit"
    assert dill.loads(envelope.body).args == (code,)


def test_unpicklable_exception_gives_empty_body():
    _, envelope = run_failing(payload(raise_unpicklable))
    assert envelope.error["type"] == "CustomError"
    assert envelope.error["message"] == "holds a generator"
    assert bytes(envelope.body) == b""


def test_exception_larger_than_limit_gives_empty_body():
    _, envelope = run_failing(payload(raise_huge_exception))
    assert envelope.error["type"] == "CustomError"
    assert bytes(envelope.body) == b""


def test_failure_with_a_long_message_can_be_unpacked():
    """The gateway must be able to read what run_job packs, whatever the message size."""
    with pytest.raises(JobFailed) as info:
        run_job(JOB, payload(raise_long_message))
    envelope = unpack(info.value.envelope)
    assert envelope.error["type"] == "ValueError"
    message = envelope.error["message"]
    assert message.startswith("[") and "characters cut]" in message
    assert message.endswith("x" * 1000) and len(message) < 11_000


def test_unpicklable_result_is_a_serialization_error():
    envelope = unpack(run_job(JOB, payload(return_generator)))
    assert envelope.ok is False
    assert envelope.error["type"] == "SerializationError"
    assert "returned a generator" in envelope.error["message"]
    assert "return plain data instead" in envelope.error["message"]
    assert envelope.error["traceback"].startswith("Traceback")
    assert bytes(envelope.body) == b""


def test_payload_referring_to_missing_module_is_a_deserialization_error():
    # the gateway accepts it (structurally a 3-tuple) but the worker cannot load it
    check_call_payload(MISSING_MODULE_PAYLOAD)
    envelope = unpack(run_job(JOB, MISSING_MODULE_PAYLOAD))
    assert envelope.ok is False
    error = envelope.error
    assert error["type"] == "DeserializationError"
    assert "cannot import module 'nonexistent_mod'" in error["message"]
    assert "ModuleNotFoundError" in error["message"]
    assert "ModuleNotFoundError" in error["traceback"]
    assert bytes(envelope.body) == b""


def test_payload_referring_to_missing_attribute_is_a_deserialization_error():
    envelope = unpack(run_job(JOB, b"\x80\x04cos\nno_such_function_here\n)}\x87."))
    assert envelope.error["type"] == "DeserializationError"
    assert "could not unpickle" in envelope.error["message"]
    assert "AttributeError" in envelope.error["message"]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(42, id="int"),
        pytest.param((add, (1,)), id="2-tuple"),
        pytest.param((1, (), {}), id="not-callable"),
        pytest.param((add, [1], {}), id="args-list"),
        pytest.param((add, (1,), []), id="kwargs-list"),
    ],
)
def test_payload_of_wrong_shape_is_a_deserialization_error(call):
    envelope = unpack(run_job(JOB, dill.dumps(call)))
    assert envelope.ok is False
    assert envelope.error["type"] == "DeserializationError"
    assert "(function, args, kwargs) tuple" in envelope.error["message"]


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x80\x04\x95"])
def test_garbage_payload_is_a_deserialization_error(data: bytes):
    envelope = unpack(run_job(JOB, data))
    assert envelope.ok is False
    error = envelope.error
    assert error["type"] == "DeserializationError"
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"Python {version}" in error["message"]
    assert f"dill {dill.__version__}" in error["message"]


def test_load_call_returns_the_parts():
    func, args, kwargs = load_call(payload(add, 1, b=2))
    assert func is add
    assert args == (1,)
    assert kwargs == {"b": 2}


@pytest.mark.parametrize(
    "call",
    [42, [add, (), {}], (add, ()), (add, (), {}, None), ("add", (), {}), (add, [], {})],
)
def test_load_call_rejects_other_shapes(call):
    with pytest.raises(TypeError, match="payload is not"):
        load_call(dill.dumps(call))


def test_load_call_propagates_unpickling_errors():
    with pytest.raises(ModuleNotFoundError):
        load_call(MISSING_MODULE_PAYLOAD)


def _raise_nested(depth: int):
    if depth == 0:
        raise Outer.InnerError("deep")
    _raise_nested(depth - 1)


def test_exception_info_of_a_nested_class_and_skipped_frames():
    try:
        _raise_nested(2)
    except Outer.InnerError as exc:
        full = exception_info(exc)
        skipped = exception_info(exc, skip_frames=1)
        everything_skipped = exception_info(exc, skip_frames=50)
    assert full["type"] == "InnerError"
    assert full["qualified_type"] == f"{__name__}.Outer.InnerError"
    assert full["message"] == "deep"
    assert "in test_exception_info_of_a_nested_class" in full["traceback"]
    assert "in test_exception_info_of_a_nested_class" not in skipped["traceback"]
    assert skipped["traceback"].count("in _raise_nested") == 3
    assert "Traceback" not in everything_skipped["traceback"]
    assert everything_skipped["traceback"].strip().endswith("InnerError: deep")


def test_exception_info_never_raised():
    description = exception_info(KeyError("k"))
    assert description == {
        "type": "KeyError",
        "qualified_type": "KeyError",
        "message": "'k'",
        "traceback": "KeyError: 'k'\n",
    }


def test_deserialization_error_hints():
    missing = ModuleNotFoundError("No module named 'pkg'", name="pkg")
    assert "cannot import module 'pkg'" in deserialization_error(missing)["message"]
    shape = TypeError("payload is not a (function, args, kwargs) tuple")
    assert "must be dill bytes" in deserialization_error(shape)["message"]
    other = TypeError("something else")
    message = deserialization_error(other)["message"]
    assert "same Python and dill versions" in message
    assert message.endswith("(TypeError: something else)")
    assert deserialization_error(other)["type"] == "DeserializationError"
