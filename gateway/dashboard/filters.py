"""The jobs list's query string, read and checked: filters and page cursors.

A bad value is answered 400 with what to send instead (the page shows it).
"""

from __future__ import annotations

from datetime import datetime, timezone

from werkzeug.datastructures import MultiDict

from gateway.api.errors import ApiError
from gateway.dashboard.queries import JobFilter
from gateway.store import KINDS, STATUSES

MAX_TEXT = 200  # characters of a name or worker filter
MAX_CURSOR_DIGITS = 18


def job_filter(args: MultiDict[str, str]) -> JobFilter:
    """The filters of the jobs list: ``status``, ``kind``, ``name``, ``worker``,
    ``since`` and ``until`` (UTC, ``YYYY-MM-DDTHH:MM``), ``gang``."""
    return JobFilter(
        status=_choice(args, "status", STATUSES),
        kind=_choice(args, "kind", KINDS),
        name=_text(args, "name"),
        worker=_text(args, "worker"),
        since=_moment(args, "since"),
        until=_moment(args, "until"),
        gang=args.get("gang") in ("1", "on", "true"),
    )


def page_cursors(args: MultiDict[str, str]) -> tuple[int | None, int | None]:
    """``before`` and ``after``: the keyset cursors of the list's pages."""
    return _cursor(args, "before"), _cursor(args, "after")


def _choice(args: MultiDict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = args.get(name) or None
    if value is not None and value not in allowed:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be one of {', '.join(allowed)}, not {value!r}"
        )
    return value


def _text(args: MultiDict[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > MAX_TEXT:
        raise ApiError(400, "invalid_parameter", f"{name} is longer than {MAX_TEXT} characters")
    return value or None


def _moment(args: MultiDict[str, str], name: str) -> float | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name} {value[:40]!r} is not a date and time: use YYYY-MM-DDTHH:MM (UTC)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _cursor(args: MultiDict[str, str], name: str) -> int | None:
    value = args.get(name) or ""
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_CURSOR_DIGITS:
        raise ApiError(400, "invalid_parameter", f"{name} {value[:40]!r} is not a page we linked")
    return int(value)
