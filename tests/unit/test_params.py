"""Unit tests for gateway.api.params (query parameter parsing, 400 on bad input)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from gateway.api.errors import ApiError
from gateway.api.params import choice, integer, job_name, number


def assert_400(info: pytest.ExceptionInfo, *fragments: str) -> None:
    exc = info.value
    assert isinstance(exc, ApiError)
    assert exc.status == 400
    assert exc.error == "invalid_parameter"
    assert str(exc) == exc.message
    for fragment in fragments:
        assert fragment in exc.message


# -- number -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [{}, {"wait": None}, {"other": "5"}])
def test_number_missing_gives_default(args: dict):
    assert number(args, "wait", default=2.5, low=0, high=60) == 2.5
    assert number(args, "wait", default=None, low=0, high=60) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [("0", 0.0), ("60", 60.0), ("1.5", 1.5), ("  7 ", 7.0), ("1e1", 10.0), ("-0", 0.0)],
)
def test_number_parses_values_in_range(raw: str, value: float):
    parsed = number({"wait": raw}, "wait", default=None, low=0, high=60)
    assert parsed == value
    assert isinstance(parsed, float)


def test_number_works_with_werkzeug_multidict():
    args = MultiDict([("wait", "3"), ("wait", "9")])
    assert number(args, "wait", default=None, low=0, high=60) == 3.0


@pytest.mark.parametrize("raw", ["", " ", "abc", "1,5", "1.2.3", "five", "0x10"])
def test_number_rejects_non_numbers(raw: str):
    with pytest.raises(ApiError) as info:
        number({"wait": raw}, "wait", default=None, low=0, high=60)
    assert_400(info, "wait must be a number", repr(raw))


@pytest.mark.parametrize("raw", ["-0.001", "60.5", "1e9", "inf", "-inf", "nan", "NaN"])
def test_number_rejects_out_of_range_and_nan(raw: str):
    with pytest.raises(ApiError) as info:
        number({"wait": raw}, "wait", default=None, low=0, high=60)
    assert_400(info, "wait must be between 0 and 60", repr(raw))


def test_number_range_message_uses_compact_format():
    with pytest.raises(ApiError) as info:
        number({"t": "20000"}, "t", default=None, low=0.5, high=10000.0)
    assert_400(info, "t must be between 0.5 and 10000")


# -- integer ------------------------------------------------------------------------


@pytest.mark.parametrize("args", [{}, {"limit": None}])
def test_integer_missing_gives_default(args: dict):
    assert integer(args, "limit", default=50, low=1, high=500) == 50


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("500", 500), ("42", 42), (" 7 ", 7)])
def test_integer_parses_values_in_range(raw: str, value: int):
    parsed = integer({"limit": raw}, "limit", default=50, low=1, high=500)
    assert parsed == value
    assert isinstance(parsed, int)


@pytest.mark.parametrize("raw", ["", "1.0", "1.5", "1e3", "ten", "0x10", "--1"])
def test_integer_rejects_non_integers(raw: str):
    with pytest.raises(ApiError) as info:
        integer({"limit": raw}, "limit", default=50, low=1, high=500)
    assert_400(info, "limit must be an integer", repr(raw))


@pytest.mark.parametrize("raw", ["0", "-1", "501", "99999999999999999999"])
def test_integer_rejects_out_of_range(raw: str):
    with pytest.raises(ApiError) as info:
        integer({"limit": raw}, "limit", default=50, low=1, high=500)
    assert_400(info, "limit must be between 1 and 500", repr(raw))


# -- choice -------------------------------------------------------------------------

STATUSES = ("queued", "running", "finished", "failed", "cancelled")


@pytest.mark.parametrize("args", [{}, {"status": None}])
def test_choice_missing_gives_none(args: dict):
    assert choice(args, "status", STATUSES) is None


@pytest.mark.parametrize("raw", STATUSES)
def test_choice_accepts_options(raw: str):
    assert choice({"status": raw}, "status", STATUSES) == raw


@pytest.mark.parametrize("raw", ["", "QUEUED", "done", " queued", "queued ", "queue"])
def test_choice_rejects_other_values(raw: str):
    with pytest.raises(ApiError) as info:
        choice({"status": raw}, "status", STATUSES)
    assert_400(
        info, "status must be one of queued, running, finished, failed, cancelled", repr(raw)
    )


# -- job_name -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [{}, {"name": None}, {"name": ""}])
def test_job_name_missing_gives_none(args: dict):
    assert job_name(args) is None


@pytest.mark.parametrize(
    "raw",
    ["nightly", "my job 1", "a.b:c@d+e-f_g", "données-été", "x" * 200, "日本語"],
)
def test_job_name_keeps_safe_names(raw: str):
    assert job_name({"name": raw}) == raw


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("a/b", "a_b"),
        ("<script>alert(1)</script>", "_script_alert_1___script_"),
        ("line\nbreak\ttab", "line_break_tab"),
        ("quote\"'`", "quote___"),
        ("semi;colon,comma", "semi_colon_comma"),
        ("../../etc/passwd", ".._.._etc_passwd"),
        ("null\x00byte", "null_byte"),
    ],
)
def test_job_name_replaces_unusual_characters(raw: str, cleaned: str):
    assert job_name({"name": raw}) == cleaned


def test_job_name_length_limit():
    assert job_name({"name": "é" * 200}) == "é" * 200
    with pytest.raises(ApiError) as info:
        job_name({"name": "x" * 201})
    assert_400(info, "name must be at most 200 characters")
