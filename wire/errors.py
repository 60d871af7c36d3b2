"""The error a failed job carries, as every side stores and sends it.

``{"type": ..., "message": ..., "traceback": ...}``: the exception's class name, its text
and the remote traceback (empty when the failure was not an exception in user code, such
as a timeout or a dead worker). Workers may add ``qualified_type``. The SDK turns it into a
:class:`client_sdk.RemoteError`; the gateway stores it as JSON and never unpickles it.
"""

from __future__ import annotations

import traceback as tb_module
from typing import Any

MAX_MESSAGE = 10_000  # characters of an exception's text kept
MAX_TRACEBACK = 50_000  # characters of a traceback kept (its end, where the cause is)


def error_info(kind: str, message: str, traceback: str = "") -> dict[str, Any]:
    """The error dict of a failure named ``kind`` (e.g. ``"TimeoutError"``)."""
    return {"type": kind, "message": message, "traceback": traceback}


def exception_info(exc: BaseException, skip_frames: int = 0) -> dict[str, Any]:
    """The error dict of ``exc``, its traceback minus ``skip_frames`` outer frames, with
    ``qualified_type``; long texts are clipped to their end."""
    cls = type(exc)
    tb = exc.__traceback__
    for _ in range(skip_frames):
        tb = tb.tb_next if tb is not None else None
    qualified = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    info = error_info(
        cls.__name__,
        _clip(_safe_str(exc), MAX_MESSAGE),
        _clip("".join(tb_module.format_exception(cls, exc, tb)), MAX_TRACEBACK),
    )
    info["qualified_type"] = qualified
    return info


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"


def _clip(text: str, limit: int) -> str:
    """Keep the end of long text (where a traceback's cause is), marking the cut."""
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit} characters cut]...{text[-limit:]}"
