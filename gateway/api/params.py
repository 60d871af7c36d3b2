"""Parse and validate query parameters, answering 400 with a clear message."""

from __future__ import annotations

import math
import re

from gateway.api.errors import ApiError

_NAME_UNSAFE = re.compile(r"[^\w .:@+-]")
MAX_KEY = 200  # characters of an idempotency key
MAX_NAME = 200  # characters of a job's display name


def number(args: dict, key: str, *, default: float | None, low: float, high: float) -> float | None:
    """``key``'s value as a float in [low, high]; ``default`` when it is absent. An empty
    value (``?wait=``) is not a number: 400, like any other."""
    raw = args.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{key} must be a number, got {raw!r}") from None
    if math.isnan(value) or not low <= value <= high:
        raise ApiError(
            400, "invalid_parameter", f"{key} must be between {low:g} and {high:g}, got {raw!r}"
        )
    return value


def integer(args: dict, key: str, *, default: int, low: int, high: int) -> int:
    """``key``'s value as an int in [low, high]; ``default`` when it is absent."""
    raw = args.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(
            400, "invalid_parameter", f"{key} must be between {low} and {high}, got {raw!r}"
        )
    return value


def choice(args: dict, key: str, options: tuple[str, ...]) -> str | None:
    """``key``'s value, one of ``options``; None when it is absent."""
    raw = args.get(key)
    if raw is None:
        return None
    if raw not in options:
        raise ApiError(
            400, "invalid_parameter", f"{key} must be one of {', '.join(options)}, got {raw!r}"
        )
    return raw


def job_name(args: dict) -> str | None:
    """A display name: at most ``MAX_NAME`` characters, anything unusual replaced by '_'."""
    raw = args.get("name")
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_NAME:
        raise ApiError(400, "invalid_parameter", f"name must be at most {MAX_NAME} characters")
    return _NAME_UNSAFE.sub("_", raw)


def is_idempotency_key(value: str) -> bool:
    """What an idempotency key may be: 1 to ``MAX_KEY`` printable characters."""
    return 1 <= len(value) <= MAX_KEY and value.isprintable()


def idempotency_key(args: dict) -> str | None:
    """The ``idempotency_key`` parameter (a job looked up by its key); None when absent."""
    raw = args.get("idempotency_key")
    if raw is not None and not is_idempotency_key(raw):
        raise ApiError(
            400, "invalid_parameter", f"idempotency_key must be 1 to {MAX_KEY} printable characters"
        )
    return raw


def wait(args: dict, max_wait: float) -> float:
    """The ``wait`` parameter: seconds to wait for jobs, 0 (the default) to ``max_wait``."""
    return number(args, "wait", default=0.0, low=0.0, high=max_wait) or 0.0


def flag(args: dict, key: str) -> bool:
    """A yes/no parameter: ``1``/``true``/``yes`` or ``0``/``false``/``no`` (absent: no)."""
    raw = args.get(key)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", ""):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid_parameter", f"{key} must be 1 or 0 (true or false), not {raw!r}")
