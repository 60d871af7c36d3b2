"""Run one chunk of a ``map`` on a worker: each item on its own, failures kept per item.

Imported on workers (the payload of a chunk job is ``apply_chunk(func, items)``), so
this module only imports the standard library, dill and :mod:`client_sdk.errors`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import Any

import dill

from client_sdk.errors import RemoteError, SerializationError
from wire.errors import error_info

Outcome = tuple[bool, Any]  # (True, value) or (False, exception)


class _PicklesAsErrorDict:
    """Pickles as ``cls(error)``: a RemoteError's ``args`` (its text) cannot rebuild it."""

    type: str
    remote_message: str
    remote_traceback: str

    def __reduce__(self) -> tuple[Any, ...]:
        error = error_info(self.type, self.remote_message, self.remote_traceback)
        return (type(self), (error,))


class RemoteItemError(_PicklesAsErrorDict, RemoteError):
    """Stands in for an item's exception that could not be pickled on the worker.

    It carries the original exception's type name, message and traceback text.
    """


class ItemSerializationError(_PicklesAsErrorDict, SerializationError):
    """An item's return value could not be pickled on the worker (the item failed alone)."""


class ChunkResult(list):
    """The outcomes of a chunk, in order; pickles each value apart only if it must.

    Pickling first tries the whole list at once (one pass). If that fails, each
    outcome is pickled on its own and an unpicklable value becomes an
    :class:`ItemSerializationError` for that item only.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_outcomes, _dump_outcomes(list(self)))


def apply_chunk(func: Callable[[Any], Any], items: Iterable[Any], retries: int = 0) -> ChunkResult:
    """Call ``func(item)`` for each item; return ``[(ok, value or exception), ...]`` in order.

    An item that raises is re-run up to ``retries`` more times. Its exception is
    returned in place (never raised), with the remote traceback text attached as
    ``remote_traceback``; an exception that cannot be pickled and unpickled is
    replaced by a :class:`RemoteItemError` built from its type, message and traceback.
    """
    outcomes = ChunkResult()
    for item in items:
        for attempt in range(retries + 1):
            try:
                outcomes.append((True, func(item)))
                break
            except BaseException as exc:  # noqa: BLE001 - each item's failure is reported
                if attempt == retries:
                    outcomes.append((False, portable_exception(exc)))
    return outcomes


def portable_exception(exc: BaseException) -> BaseException:
    """``exc`` with its traceback text attached if it survives a pickle round trip, else
    a :class:`RemoteItemError` describing it."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    error = error_info(type(exc).__name__, str(exc), text)
    try:
        exc.__traceback__ = None
        exc.__context__ = exc.__cause__ = None
        exc.remote_traceback = text  # type: ignore[attr-defined]
        copy = dill.loads(dill.dumps(exc))
    except Exception:
        return RemoteItemError(error)
    return exc if isinstance(copy, BaseException) else RemoteItemError(error)


def _dump_outcomes(outcomes: list[Outcome]) -> tuple[bytes, bool]:
    """``(bytes of the whole list, False)``, or ``(bytes of a list of per-item bytes, True)``."""
    try:
        return dill.dumps(outcomes, protocol=dill.HIGHEST_PROTOCOL), False
    except Exception:
        pass
    each = [_dump_one(outcome) for outcome in outcomes]
    return dill.dumps(each, protocol=dill.HIGHEST_PROTOCOL), True


def _dump_one(outcome: Outcome) -> bytes:
    try:
        return dill.dumps(outcome, protocol=dill.HIGHEST_PROTOCOL)
    except Exception as exc:
        kind = type(outcome[1]).__name__
        error = error_info(
            "SerializationError",
            f"the function returned a {kind}, which cannot be pickled "
            f"({type(exc).__name__}: {exc}); return plain data instead",
        )
        return dill.dumps((False, ItemSerializationError(error)))


def _load_outcomes(data: bytes, per_item: bool) -> list[Outcome]:
    loaded = dill.loads(data)
    return [dill.loads(one) for one in loaded] if per_item else loaded
