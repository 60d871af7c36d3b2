"""Unit tests for wire.envelope (JSON header line + opaque body)."""

from __future__ import annotations

import json

import pytest

from wire.envelope import VERSION, Envelope, pack, unpack

ERROR = {
    "type": "ValueError",
    "qualified_type": "ValueError",
    "message": "bad value\nwith a newline — and ünïcode \u2028",
    "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\n',
}


def test_round_trip_of_a_finished_envelope():
    body = b"\x80\x05\x95body with\nnewlines\n\n and \x00 bytes\xff"
    original = Envelope(True, "tcp://10.0.0.1:4000", 1700000000.25, 1700000001.5, None, body)
    result = unpack(pack(original))
    assert result.ok is True
    assert result.worker == "tcp://10.0.0.1:4000"
    assert result.started == 1700000000.25
    assert result.finished == 1700000001.5
    assert result.error is None
    assert bytes(result.body) == body


def test_round_trip_of_a_failed_envelope():
    original = Envelope(False, "w", 1.0, 2.0, ERROR, b"pickled exception")
    result = unpack(pack(original))
    assert result.ok is False
    assert result.error == ERROR
    assert bytes(result.body) == b"pickled exception"
    assert result.header() == original.header()


def test_round_trip_of_defaults():
    result = unpack(pack(Envelope(ok=False)))
    assert (result.ok, result.worker, result.started, result.finished, result.error) == (
        False,
        None,
        None,
        None,
        None,
    )
    assert bytes(result.body) == b""


def test_packed_format_is_one_compact_json_line_then_the_body():
    packed = pack(Envelope(True, "w", 1.0, 2.0, None, b"BODY\nMORE"))
    head, sep, rest = packed.partition(b"\n")
    assert sep == b"\n"
    assert rest == b"BODY\nMORE"
    assert b" " not in head  # compact separators
    assert json.loads(head) == {
        "v": VERSION,
        "ok": True,
        "worker": "w",
        "started": 1.0,
        "finished": 2.0,
        "error": None,
        "logs": 0,
    }


def test_logs_sit_between_header_and_body():
    packed = pack(Envelope(True, "w", 1.0, 2.0, None, b"BODY", b"printed\n"))
    head, _, rest = packed.partition(b"\n")
    assert json.loads(head)["logs"] == len(b"printed\n")
    assert rest == b"printed\nBODY"
    envelope = unpack(packed)
    assert bytes(envelope.logs) == b"printed\n" and bytes(envelope.body) == b"BODY"


def test_header_never_contains_a_raw_newline():
    packed = pack(Envelope(False, "w\nx", None, None, ERROR, b""))
    head, _, rest = packed.partition(b"\n")
    assert rest == b""
    assert json.loads(head)["error"] == ERROR
    assert unpack(packed).worker == "w\nx"


def test_header_method():
    envelope = Envelope(True, "w", 3.0, 4.0, None, b"ignored")
    assert envelope.header() == {
        "v": VERSION,
        "ok": True,
        "worker": "w",
        "started": 3.0,
        "finished": 4.0,
        "error": None,
        "logs": 0,
    }


def test_pack_accepts_a_memoryview_body():
    data = bytearray(b"0123456789")
    packed = pack(Envelope(True, body=memoryview(data)[2:5]))
    assert bytes(unpack(packed).body) == b"234"


def test_unpack_body_is_a_zero_copy_view_of_bytes():
    packed = pack(Envelope(True, body=b"payload"))
    body = unpack(packed).body
    assert isinstance(body, memoryview)
    assert body.obj is packed
    assert body.tobytes() == b"payload"


def test_unpack_body_views_a_bytearray_without_copying():
    data = bytearray(pack(Envelope(True, body=b"abc")))
    body = unpack(data).body
    data[-1:] = b"Z"
    assert bytes(body) == b"abZ"


def test_unpack_accepts_a_memoryview():
    packed = pack(Envelope(False, "w", None, None, ERROR, b"e"))
    result = unpack(memoryview(packed))
    assert result.error == ERROR
    assert bytes(result.body) == b"e"


def test_large_body_round_trip():
    body = bytes(range(256)) * 10_000
    result = unpack(pack(Envelope(True, body=body)))
    assert bytes(result.body) == body


def test_large_error_round_trip():
    """A worker may report a huge message or traceback (deep mutual recursion, big reprs)."""
    error = dict(ERROR, message="x" * 100_000, traceback="  File ...\n" * 10_000)
    result = unpack(pack(Envelope(False, "w", 1.0, 2.0, error, b"exc")))
    assert result.error == error
    assert bytes(result.body) == b"exc"


def test_unpack_of_a_large_view_copies_only_the_header():
    body = bytes(range(256)) * 4096
    view = memoryview(pack(Envelope(True, body=body)))
    result = unpack(view)
    assert result.body.obj is view.obj  # a view into the received bytes, not a copy
    assert bytes(result.body) == body


def test_unpack_of_a_view_with_a_header_longer_than_the_first_search():
    error = dict(ERROR, traceback="  File ...\n" * 20_000)  # a header line over 64 KiB
    result = unpack(memoryview(pack(Envelope(False, "w", 1.0, 2.0, error, b"exc"))))
    assert result.error == error
    assert bytes(result.body) == b"exc"


def test_ok_is_coerced_to_bool():
    data = b'{"v":1,"ok":1}\nbody'
    result = unpack(data)
    assert result.ok is True
    assert result.worker is None and result.error is None
    assert bytes(result.body) == b"body"


@pytest.mark.parametrize("data", [b"", b"no header at all", b'{"v":1,"ok":true}'])
def test_missing_header_line_is_rejected(data: bytes):
    with pytest.raises(ValueError, match="no header line"):
        unpack(data)


@pytest.mark.parametrize(
    "head",
    [b'{"v":2,"ok":true}', b'{"ok":true}', b'{"v":"1","ok":true}', b'{"v":null,"ok":true}'],
)
def test_other_versions_are_rejected(head: bytes):
    with pytest.raises(ValueError, match="unsupported job envelope version"):
        unpack(head + b"\nbody")


def test_invalid_json_header_is_rejected():
    with pytest.raises(ValueError):
        unpack(b"{not json\nbody")


def test_header_without_ok_is_rejected():
    with pytest.raises((KeyError, ValueError)):
        unpack(b'{"v":1}\nbody')


def test_a_body_of_several_buffers_is_packed_in_order():
    parts = [b"head", memoryview(bytes(range(256)) * 8192), b"tail"]  # over 1 MiB in all
    packed = pack(Envelope(True, "w", 1.0, 2.0, None, parts, b"logs"))
    result = unpack(packed)
    assert bytes(result.body) == b"".join(parts)
    assert bytes(result.logs) == b"logs"
