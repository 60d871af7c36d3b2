"""The body of ``POST /batches``: several call payloads, each after its length.

Each payload (the dill bytes of one ``(func, args, kwargs)`` call) is preceded by its
length as an 8-byte big-endian unsigned integer. Nothing else is in the body: no JSON,
no base64. Shared by the SDK, which writes it, and the gateway, which splits it (and
never unpickles what it finds).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_LENGTH = struct.Struct(">Q")
LENGTH_BYTES = _LENGTH.size


class InvalidBatch(ValueError):
    """The body is not a sequence of length-prefixed payloads."""


def encode(payloads: Sequence[bytes]) -> bytes:
    """One body holding ``payloads`` in order."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(_LENGTH.pack(len(payload)))
        parts.append(payload)
    return b"".join(parts)


def decode(body: bytes | memoryview, max_items: int) -> list[memoryview]:
    """The payloads in ``body``, as views of it (no copies); raise :class:`InvalidBatch`."""
    view = memoryview(body)
    payloads: list[memoryview] = []
    offset = 0
    while offset < len(view):
        if len(payloads) == max_items:
            raise InvalidBatch(f"a batch holds at most {max_items} calls")
        if offset + LENGTH_BYTES > len(view):
            raise InvalidBatch(
                f"the body ends inside the length of call {len(payloads)} "
                f"(at byte {offset} of {len(view)})"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += LENGTH_BYTES
        if length > len(view) - offset:
            raise InvalidBatch(
                f"call {len(payloads)} says it is {length} bytes, but only "
                f"{len(view) - offset} bytes follow"
            )
        payloads.append(view[offset : offset + length])
        offset += length
    return payloads
