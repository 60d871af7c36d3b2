"""Serialize calls and deserialize results and remote exceptions with dill.

Functions and classes from the caller's own modules (files that are not installed
packages) are shipped by value, like those in ``__main__``: workers usually cannot
import the caller's files.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import os
import sys
import sysconfig
import threading
from collections.abc import Iterator
from typing import Any

import dill
import dill._dill

from client_sdk.errors import GATEWAY_ERRORS, RemoteError
from client_sdk.pickling import Pickled, dump_buffers, load_buffers

_OWN_PACKAGES = {"client_sdk", "gateway", "worker", "scheduler", "distribute_challenge"}
_INSTALLED_ROOTS = tuple(
    os.path.join(os.path.realpath(path), "")
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
    if (path := sysconfig.get_paths().get(key))
)
_state = threading.local()
_dumps_lock = threading.Lock()
_dill_locate = dill._dill._locate_function


def _locate(obj: Any, pickler: Any = None) -> bool:
    """dill's by-reference test, answering 'not locatable' for the caller's own modules."""
    if getattr(_state, "by_value", False) and is_user_module(getattr(obj, "__module__", None)):
        return False
    return _dill_locate(obj, pickler)


dill._dill._locate_function = _locate


@functools.lru_cache(maxsize=4096)
def is_user_module(name: str | None) -> bool:
    """True for a module loaded from a file outside the stdlib and site-packages."""
    if not name or name == "__main__":
        return False
    top = name.partition(".")[0]
    if top in _OWN_PACKAGES or top in sys.stdlib_module_names:
        return False
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return not os.path.realpath(path).startswith(_INSTALLED_ROOTS)


# Bodies smaller than this are sent as one bytes object; larger ones as their buffers.
JOIN_BELOW = 1 << 20


def dumps_call(func: Any, args: tuple, kwargs: dict) -> bytes | Pickled:
    """The request body for a job: dill bytes of ``(func, args, kwargs)``.

    A large body is returned as :class:`~client_sdk.pickling.Pickled` buffers that
    refer to the arguments' arrays (sent as they are, with a Content-Length, without
    joining them); a small one as bytes. Serialized one call at a time: dill's
    detection of a function's globals swaps ``sys.stdout`` for the whole process,
    which is not safe from several threads.
    """
    with _pickling_by_value():
        pickled = dump_buffers((func, args, kwargs), index=True, recurse=True)
    return bytes(pickled) if len(pickled) < JOIN_BELOW else pickled


@contextlib.contextmanager
def _pickling_by_value() -> Iterator[None]:
    """Ship the caller's own modules' functions and classes by value, one thread at a
    time (see :func:`dumps_call`)."""
    with _dumps_lock:
        _state.by_value = True
        try:
            yield
        finally:
            _state.by_value = False


class PickledFunction:
    """A function pickled once, to be put in the payloads of many calls.

    It pickles as ``dill.loads(its bytes)``, so each payload unpickles to the function
    as if it had been pickled there, without walking the function again per call (by
    value that takes ~0.4 ms; this, ~20 us).
    """

    def __init__(self, func: Any) -> None:
        with _pickling_by_value():
            self.data = dill.dumps(func, protocol=5, recurse=True)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return dill.loads, (self.data,)


def loads_result(data: bytes | memoryview) -> Any:
    """A job's result from its bytes; large arrays are views of ``data``, not copies."""
    return load_buffers(data)


def rebuild_exception(job: dict[str, Any]) -> BaseException:
    """The original exception of a failed job if it can be rebuilt, else a RemoteError."""
    error = job.get("error") or {}
    exc: Any = None
    if job.get("exception"):
        try:
            exc = dill.loads(base64.b64decode(job["exception"]))
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        return GATEWAY_ERRORS.get(error.get("type", ""), RemoteError)(error)
    exc = _as_local_class(exc)
    traceback_text = error.get("traceback") or ""
    exc.remote_traceback = traceback_text  # type: ignore[attr-defined]
    if traceback_text and hasattr(exc, "add_note"):
        exc.add_note(f"Remote traceback (computed on a worker):\n{traceback_text.rstrip()}")
    return exc


def _as_local_class(exc: BaseException) -> BaseException:
    """If the exception's class was shipped by value, swap in the caller's own class."""
    cls = type(exc)
    try:
        local = importlib.import_module(cls.__module__)
        for part in cls.__qualname__.split("."):
            local = getattr(local, part)
    except Exception:
        return exc
    if local is cls or not (isinstance(local, type) and issubclass(local, BaseException)):
        return exc
    rebuilt = local.__new__(local)
    rebuilt.__dict__.update(exc.__dict__)
    rebuilt.args = exc.args
    return rebuilt
