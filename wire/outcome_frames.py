"""The body of a ``POST /results`` answer: one frame per job, as each job is done.

(A ``POST /batches?wait`` answer is the same, after a first frame whose JSON lists the
batch's jobs.)

A frame is two 8-byte big-endian lengths, then that many bytes of the job's JSON
(as ``GET /jobs/<id>`` answers it, plus ``exception`` for a failed job, or
``refusal``: ``{"status", "error", "message"}`` for a result that can no longer be
had), then that many bytes of the job's result (the dill bytes, for a finished job;
nothing otherwise). Shared by the
gateway, which writes frames without unpickling anything, and the SDK, which reads them.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from wire.limits import MAX_FRAME_JSON_BYTES as MAX_JSON_BYTES

_LENGTHS = struct.Struct(">QQ")
HEADER_BYTES = _LENGTHS.size
MEDIA_TYPE = "application/x-computethis-outcomes"


class InvalidFrame(ValueError):
    """The answer is not a sequence of outcome frames."""


def frame_head(info: dict[str, Any], result_size: int) -> bytes:
    """The lengths and JSON that start a frame; ``result_size`` bytes of result follow."""
    text = json.dumps(info, separators=(",", ":")).encode()
    return _LENGTHS.pack(len(text), result_size) + text


def read_lengths(head: bytes) -> tuple[int, int]:
    """``(json_bytes, result_bytes)`` from a frame's first ``HEADER_BYTES`` bytes."""
    if len(head) != HEADER_BYTES:
        raise InvalidFrame(f"the answer ended inside a frame's lengths ({len(head)} bytes)")
    json_bytes, result_bytes = _LENGTHS.unpack(head)
    if json_bytes > MAX_JSON_BYTES:
        raise InvalidFrame(f"a frame says its JSON is {json_bytes} bytes")
    return json_bytes, result_bytes
