"""The bytes a worker sends back for one job: a JSON header line, then an opaque body.

The gateway reads the header (plain JSON) and stores the rest as it is, so it never
has to unpickle anything a worker produced. After the header line come the job's
captured output (``logs`` bytes of UTF-8 text, its length in the header), then the
body: for a finished job the dill bytes of the return value; for a failed one the
dill bytes of the exception (possibly empty when it could not be pickled). A folder
job's body is a zip of its outputs, kept whether the command succeeded or not
(``result_body``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from distributed.protocol.utils import host_array_from_buffers

VERSION = 1
# Event topic on which a job's start is announced to the gateway (msgpack, not pickle).
STARTED_TOPIC = "computethis.started"
# Event topic on which the gateway hears that a job's outcome is ready: from the worker,
# the outcome itself when small (no fetch from the worker afterwards), else a request to
# fetch it; from the scheduler, a job that failed for good (scheduler.plugin).
RESULT_TOPIC = "computethis.result"
# Event topic on which a running folder job's output reaches the gateway as it is
# printed: ``{"job", "offset", "text"}`` (``offset``: characters sent before this text).
LOGS_TOPIC = "computethis.logs"
_SEPARATOR = b"\n"
_HEADER_SEARCH = 1 << 16  # where a header line (a JSON object) almost always ends
# Envelopes larger than this are packed into memory allocated as Dask allocates the
# frames it receives (numpy, in huge pages): a copy into fresh bytes costs ~4x more.
_HOST_ARRAY_ABOVE = 1 << 20


@dataclass
class Envelope:
    """Outcome of one job as produced on a worker."""

    ok: bool
    worker: str | None = None
    started: float | None = None
    finished: float | None = None
    error: dict[str, Any] | None = None
    body: bytes | memoryview | Iterable[bytes | memoryview] = field(default=b"", repr=False)
    logs: bytes | memoryview = field(default=b"", repr=False)
    # The body is the job's result even when it failed (a command's outputs, which are
    # kept whatever its exit status); else a failed job's body is its pickled exception.
    result_body: bool = False

    def header(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "ok": self.ok,
            "worker": self.worker,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "logs": len(self.logs),
            **({"result_body": True} if self.result_body else {}),
        }


def pack(envelope: Envelope) -> bytes | memoryview:
    """Serialize an envelope into one buffer (one copy of the body).

    The body may be one buffer or several (pickled data written as views).
    """
    head = json.dumps(envelope.header(), separators=(",", ":")).encode()
    body = envelope.body
    parts = [head, _SEPARATOR, envelope.logs]
    parts += [body] if isinstance(body, (bytes, bytearray, memoryview)) else list(body)
    if sum(memoryview(part).nbytes for part in parts) > _HOST_ARRAY_ABOVE:
        return host_array_from_buffers(parts)
    return b"".join(parts)


def unpack(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse bytes made by :func:`pack`; the body is a zero-copy view."""
    view = memoryview(data).cast("B")
    if isinstance(data, (bytes, bytearray)):
        end = data.find(_SEPARATOR)
    else:  # a view (of a large result, say): copy only the start to find the header line
        end = bytes(view[:_HEADER_SEARCH]).find(_SEPARATOR)
        if end < 0 and len(view) > _HEADER_SEARCH:
            end = bytes(view).find(_SEPARATOR)
    if end < 0:
        raise ValueError("malformed job envelope: no header line")
    header = json.loads(bytes(view[:end]))
    if header.get("v") != VERSION:
        raise ValueError(f"unsupported job envelope version {header.get('v')!r}")
    logs = int(header.get("logs") or 0)
    return Envelope(
        ok=bool(header["ok"]),
        worker=header.get("worker"),
        started=header.get("started"),
        finished=header.get("finished"),
        error=header.get("error"),
        logs=view[end + 1 : end + 1 + logs],
        body=view[end + 1 + logs :],
        result_body=bool(header.get("result_body")),
    )
