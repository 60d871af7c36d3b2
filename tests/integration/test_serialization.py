"""Unit tests for client_sdk.serialization: shipping calls by value, rebuilding exceptions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import dill
import numpy as np
import pytest

import client_sdk.serialization as serialization
from client_sdk.errors import (
    GATEWAY_ERRORS,
    CommandFailed,
    ComputeThisError,
    DeserializationError,
    JobTimeout,
    RemoteError,
    SerializationError,
    WorkerDied,
)
from client_sdk.serialization import dumps_call, is_user_module, loads_result, rebuild_exception
from wire.envelope import unpack

SCALE = 3
TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3, in f\nValueError: bad\n'


def helper(x):
    return x * SCALE


class Accumulator:
    def __init__(self, start):
        self.total = start

    def add(self, value):
        self.total += helper(value)
        return self


def user_function(x, y=1):
    return Accumulator(y).add(x).total


class UserError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def raise_user_error(code):
    raise UserError(code, "detail text")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run_isolated(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter that cannot import this test package.

    ``-I`` drops the current directory, PYTHONPATH and user site-packages from
    ``sys.path`` but keeps the venv's site-packages (dill, the installed project).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )


LOAD_AND_CALL = """
    import importlib.util, json, sys
    assert importlib.util.find_spec("tests") is None, "the tests package must not be importable"
    import dill
    with open("call.pkl", "rb") as f:
        func, args, kwargs = dill.load(f)
    print(json.dumps({"result": func(*args, **kwargs), "module": func.__module__}))
"""


# -- is_user_module -----------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "", "__main__"])
def test_no_module_or_main_is_not_a_user_module(name):
    assert is_user_module(name) is False


@pytest.mark.parametrize("name", ["os", "json", "json.decoder", "collections.abc", "sys"])
def test_stdlib_modules_are_not_user_modules(name: str):
    assert is_user_module(name) is False


@pytest.mark.parametrize("name", ["dill", "numpy", "numpy.linalg", "pytest"])
def test_installed_packages_are_not_user_modules(name: str):
    __import__(name)
    assert is_user_module(name) is False


@pytest.mark.parametrize(
    "name", ["client_sdk", "client_sdk.serialization", "gateway.store", "worker.runner"]
)
def test_computethis_own_packages_are_not_user_modules(name: str):
    __import__(name)
    assert is_user_module(name) is False


def test_test_module_is_a_user_module():
    assert __name__ in sys.modules
    assert is_user_module(__name__) is True
    assert is_user_module(user_function.__module__) is True


def test_module_from_a_plain_file_is_a_user_module(tmp_path: Path, monkeypatch):
    name = f"ct_user_mod_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        __import__(name)
        assert is_user_module(name) is True
        assert is_user_module(f"{name}.sub") is False  # not imported
    finally:
        sys.modules.pop(name, None)


def test_module_without_file_or_not_imported_is_not_a_user_module():
    name = f"ct_nofile_{uuid.uuid4().hex}"
    assert is_user_module(f"ct_never_imported_{uuid.uuid4().hex}") is False
    sys.modules[name] = types.ModuleType(name)
    try:
        assert is_user_module(name) is False
    finally:
        del sys.modules[name]


# -- dumps_call ---------------------------------------------------------------------


def test_dumps_call_ships_user_functions_by_value():
    data = dumps_call(user_function, (4,), {"y": 2})
    func, args, kwargs = dill.loads(data)
    assert func is not user_function  # rebuilt from the bytes, not imported
    assert (args, kwargs) == ((4,), {"y": 2})
    assert func(*args, **kwargs) == user_function(4, y=2) == 14


def test_dumps_call_ships_user_class_instances_by_value():
    data = dumps_call(Accumulator.add, (Accumulator(1), 2), {})
    func, args, _ = dill.loads(data)
    assert type(args[0]) is not Accumulator
    assert type(args[0]).__name__ == "Accumulator"
    assert func(*args).total == 1 + 2 * SCALE


def test_dumps_call_keeps_installed_functions_by_reference():
    func, args, kwargs = dill.loads(dumps_call(json.dumps, ({"a": 1},), {"sort_keys": True}))
    assert func is json.dumps
    func, args, _ = dill.loads(dumps_call(np.sum, (np.arange(5),), {}))
    assert func is np.sum
    assert np.array_equal(args[0], np.arange(5))
    func, _, _ = dill.loads(dumps_call(rebuild_exception, (), {}))
    assert func is rebuild_exception


def test_dumps_call_handles_lambdas_and_closures():
    offset = 7
    func, args, _ = dill.loads(dumps_call(lambda x: x + offset, (1,), {}))
    assert func(*args) == 8


def test_plain_dill_still_pickles_user_functions_by_reference():
    dumps_call(user_function, (1,), {})
    assert dill.loads(dill.dumps(user_function)) is user_function


def test_by_value_mode_is_reset_when_pickling_fails():
    with pytest.raises(TypeError):
        dumps_call(user_function, ((i for i in range(2)),), {})
    assert dill.loads(dill.dumps(user_function)) is user_function


def test_by_value_call_loads_where_the_test_package_is_missing(tmp_path: Path):
    (tmp_path / "call.pkl").write_bytes(dumps_call(user_function, (4,), {"y": 2}))
    done = run_isolated(tmp_path, LOAD_AND_CALL)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {"result": 14, "module": __name__}


def test_by_reference_call_fails_where_the_test_package_is_missing(tmp_path: Path):
    """Control: proves the isolated interpreter really cannot import this module."""
    (tmp_path / "call.pkl").write_bytes(dill.dumps((user_function, (4,), {"y": 2})))
    done = run_isolated(tmp_path, LOAD_AND_CALL)
    assert done.returncode != 0
    assert b"No module named 'tests'" in done.stderr


def test_exception_from_by_value_call_rebuilds_as_the_local_class(tmp_path: Path):
    """Worker side in a fresh interpreter (run_job), client side here."""
    (tmp_path / "call.pkl").write_bytes(dumps_call(raise_user_error, (7,), {}))
    done = run_isolated(
        tmp_path,
        """
        import sys
        from worker.runner import JobFailed, run_job
        try:
            run_job("0" * 32, open("call.pkl", "rb").read())
        except JobFailed as failed:
            sys.stdout.buffer.write(failed.envelope)
        else:
            sys.exit("run_job did not raise")
        """,
    )
    assert done.returncode == 0, done.stderr.decode()
    envelope = unpack(done.stdout)
    assert envelope.error["type"] == "UserError"
    assert len(envelope.body) > 0
    job = {"status": "failed", "error": envelope.error, "exception": b64(bytes(envelope.body))}

    exc = rebuild_exception(job)
    assert type(exc) is UserError
    assert (exc.code, exc.detail, exc.args) == (7, "detail text", (7, "detail text"))
    assert "in raise_user_error" in exc.remote_traceback
    assert len(exc.__notes__) == 1
    assert exc.__notes__[0].startswith("Remote traceback (computed on a worker):\n")
    assert "in raise_user_error" in exc.__notes__[0]
    with pytest.raises(UserError):
        raise exc


# -- loads_result -------------------------------------------------------------------


def test_loads_result_round_trip():
    value = {"array": [1, 2, 3], "nested": (None, 1.5, "x")}
    assert loads_result(dill.dumps(value)) == value
    assert np.array_equal(loads_result(dill.dumps(np.eye(3))), np.eye(3))


# -- rebuild_exception --------------------------------------------------------------


def test_rebuilds_builtin_exception_with_remote_traceback_note():
    job = {
        "error": {"type": "ValueError", "message": "bad", "traceback": TRACEBACK},
        "exception": b64(dill.dumps(ValueError("bad"))),
    }
    exc = rebuild_exception(job)
    assert type(exc) is ValueError
    assert exc.args == ("bad",)
    assert exc.remote_traceback == TRACEBACK
    assert exc.__notes__ == [f"Remote traceback (computed on a worker):\n{TRACEBACK.rstrip()}"]


def test_rebuild_without_traceback_adds_no_note():
    job = {
        "error": {"type": "KeyError", "message": "'k'"},
        "exception": b64(dill.dumps(KeyError("k"))),
    }
    exc = rebuild_exception(job)
    assert type(exc) is KeyError
    assert exc.remote_traceback == ""
    assert not hasattr(exc, "__notes__")


def test_rebuilds_user_exception_pickled_by_reference():
    job = {"error": {"traceback": TRACEBACK}, "exception": b64(dill.dumps(UserError(1, "d")))}
    exc = rebuild_exception(job)
    assert type(exc) is UserError
    assert (exc.code, exc.detail) == (1, "d")


def test_rebuilds_user_exception_pickled_by_value_as_local_class():
    # what a worker sends: the exception of a class that reached it by value
    (foreign, _, _) = dill.loads(dumps_call(UserError(2, "remote"), (), {}))
    assert type(foreign) is not UserError
    job = {"error": {"traceback": TRACEBACK}, "exception": b64(dill.dumps(foreign))}
    exc = rebuild_exception(job)
    assert type(exc) is UserError
    assert isinstance(exc, UserError)
    assert exc.args == (2, "remote")
    assert (exc.code, exc.detail) == (2, "remote")
    assert exc.remote_traceback == TRACEBACK


def test_rebuilds_exception_of_a_local_class_as_it_is():
    def make():
        class LocalError(Exception):
            pass

        return LocalError("inside")

    job = {"error": {"traceback": TRACEBACK}, "exception": b64(dill.dumps(make()))}
    exc = rebuild_exception(job)
    assert type(exc).__name__ == "LocalError"
    assert exc.args == ("inside",)
    assert exc.remote_traceback == TRACEBACK


def test_pickled_exception_wins_over_the_error_type():
    job = {
        "error": {"type": "DeserializationError", "message": "m"},
        "exception": b64(dill.dumps(ZeroDivisionError("z"))),
    }
    assert type(rebuild_exception(job)) is ZeroDivisionError


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("DeserializationError", DeserializationError),
        ("SerializationError", SerializationError),
        ("WorkerDied", WorkerDied),
        ("TimeoutError", JobTimeout),
    ],
)
def test_gateway_error_types_map_to_sdk_errors(error_type: str, expected: type):
    error = {"type": error_type, "message": "what happened", "traceback": TRACEBACK}
    exc = rebuild_exception({"status": "failed", "error": error})
    assert type(exc) is expected
    assert isinstance(exc, RemoteError)
    assert isinstance(exc, ComputeThisError)
    assert exc.type == error_type
    assert exc.remote_message == "what happened"
    assert exc.remote_traceback == TRACEBACK
    assert str(exc) == f"{error_type}: what happened\n\nRemote traceback:\n{TRACEBACK.rstrip()}"


def test_gateway_error_map_is_complete():
    expected = {
        "CommandFailed": CommandFailed,
        "DeserializationError": DeserializationError,
        "SerializationError": SerializationError,
        "WorkerDied": WorkerDied,
        "TimeoutError": JobTimeout,
    }
    assert expected == GATEWAY_ERRORS


def test_job_timeout_is_a_timeout_error():
    exc = rebuild_exception({"error": {"type": "TimeoutError", "message": "too slow"}})
    assert isinstance(exc, TimeoutError)
    assert str(exc) == "TimeoutError: too slow"


def test_unknown_error_without_exception_is_a_remote_error():
    exc = rebuild_exception({"error": {"type": "ValueError", "message": "bad", "traceback": ""}})
    assert type(exc) is RemoteError
    assert exc.type == "ValueError"
    assert str(exc) == "ValueError: bad"


@pytest.mark.parametrize("job", [{}, {"error": None}, {"error": {}}, {"exception": ""}])
def test_missing_error_is_a_generic_remote_error(job: dict):
    exc = rebuild_exception(job)
    assert type(exc) is RemoteError
    assert exc.type == "Error"
    assert exc.remote_message == ""
    assert exc.remote_traceback == ""


@pytest.mark.parametrize(
    "exception",
    [
        pytest.param("!!! not base64 !!!", id="bad-base64"),
        pytest.param(b64(b"not a pickle"), id="bad-pickle"),
        pytest.param(b64(b"\x80\x04cnonexistent_mod\nBoom\n)R."), id="missing-module"),
        pytest.param(b64(dill.dumps(42)), id="not-an-exception"),
        pytest.param(b64(dill.dumps(ValueError)), id="exception-class"),
    ],
)
def test_unusable_pickled_exception_falls_back_to_the_error_type(exception: str):
    error = {"type": "SerializationError", "message": "m", "traceback": "tb"}
    exc = rebuild_exception({"error": error, "exception": exception})
    assert type(exc) is SerializationError
    assert exc.remote_traceback == "tb"

    error = {"type": "CustomError", "message": "m", "traceback": "tb"}
    exc = rebuild_exception({"error": error, "exception": exception})
    assert type(exc) is RemoteError
    assert exc.type == "CustomError"


def test_serialization_module_patches_dill_locator():
    assert dill._dill._locate_function is serialization._locate
