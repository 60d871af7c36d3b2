"""An index of a pickle's large buffers, written after the pickle's final STOP opcode.

Unpickling a large array copies its bytes out of the pickle: 0.17 s for 256 MB from
bytes, 0.5 s from a memoryview (``dill.loads`` first copies a view into a BytesIO).
The pickler knows where it wrote each large buffer, so it appends their positions;
a reader that knows this index (the SDK and the workers) hands those buffers to the
unpickler as views of the bytes it received, out of band, and copies nothing.

Every other reader is unaffected: ``pickle.loads`` ignores bytes after the end of a
pickle, so a REST user's ``pickle.loads(result)`` works as before, and the gateway
only checks the index's layout (it never unpickles).

Layout after the STOP opcode: ``count`` entries of two little-endian u64 (offset of
a ``BYTEARRAY8`` or ``BINBYTES8`` opcode, length of its data), ``count`` as a u64,
then the 8 bytes of :data:`MAGIC`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

MAGIC = b"CTBUFIX1"
_ENTRY = struct.Struct("<QQ")
_COUNT = struct.Struct("<Q")
_TAIL = _COUNT.size + len(MAGIC)
# Largest index a reader accepts: a million buffers of at least 64 KiB each.
MAX_SIZE = (1 << 20) * _ENTRY.size + _TAIL

Span = tuple[int, int]  # (offset of the opcode, length of the data after its header)


def encode(spans: Sequence[Span]) -> bytes:
    """The index of ``spans`` (in the order they appear in the pickle)."""
    entries = b"".join(_ENTRY.pack(offset, length) for offset, length in spans)
    return entries + _COUNT.pack(len(spans)) + MAGIC


def size_if_index(tail: bytes | memoryview) -> int | None:
    """The size of the index that ends ``tail`` (the bytes after a pickle), or None
    if ``tail`` is not exactly one index."""
    if len(tail) < _TAIL or bytes(tail[-len(MAGIC) :]) != MAGIC:
        return None
    (count,) = _COUNT.unpack(tail[-_TAIL : -len(MAGIC)])
    size = count * _ENTRY.size + _TAIL
    return size if size == len(tail) else None


def read(data: memoryview) -> tuple[int, list[Span]] | None:
    """``(end of the pickle, spans)`` if ``data`` ends with an index, else None.

    Only the layout is checked here; the spans themselves are checked by the reader
    against the pickle's opcodes before it trusts them.
    """
    if len(data) < _TAIL + 1 or bytes(data[-len(MAGIC) :]) != MAGIC:
        return None
    (count,) = _COUNT.unpack(data[-_TAIL : -len(MAGIC)])
    end = len(data) - _TAIL - count * _ENTRY.size
    if count == 0 or end < 1:
        return None
    spans = list(_ENTRY.iter_unpack(data[end : len(data) - _TAIL]))
    return end, spans
