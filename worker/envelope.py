"""The bytes a worker sends back for one job: a JSON header line, then an opaque body.

The gateway reads the header (plain JSON) and stores the body as it is, so it never
has to unpickle anything a worker produced. For a finished job the body is the dill
bytes of the return value; for a failed one it is the dill bytes of the exception
(possibly empty when the exception could not be pickled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
_SEPARATOR = b"\n"


@dataclass
class Envelope:
    """Outcome of one job as produced on a worker."""

    ok: bool
    worker: str | None = None
    started: float | None = None
    finished: float | None = None
    error: dict[str, Any] | None = None
    body: bytes | memoryview = field(default=b"", repr=False)

    def header(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "ok": self.ok,
            "worker": self.worker,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
        }


def pack(envelope: Envelope) -> bytes:
    """Serialize an envelope to bytes (one copy of the body)."""
    head = json.dumps(envelope.header(), separators=(",", ":")).encode()
    return b"".join((head, _SEPARATOR, envelope.body))


def unpack(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse bytes made by :func:`pack`; the body is a zero-copy view."""
    view = memoryview(data)
    # bytes/bytearray search in place; anything else is copied once (small in practice).
    end = (data if isinstance(data, (bytes, bytearray)) else view.tobytes()).find(_SEPARATOR)
    if end < 0:
        raise ValueError("malformed job envelope: no header line")
    header = json.loads(bytes(view[:end]))
    if header.get("v") != VERSION:
        raise ValueError(f"unsupported job envelope version {header.get('v')!r}")
    return Envelope(
        ok=bool(header["ok"]),
        worker=header.get("worker"),
        started=header.get("started"),
        finished=header.get("finished"),
        error=header.get("error"),
        body=view[end + 1 :],
    )
