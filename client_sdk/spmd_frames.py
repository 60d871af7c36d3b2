"""A frame between two ranks of an SPMD job, and the connection it travels on.

A frame is a fixed header (kind, serializer, tag, number of out-of-band buffers, pickle
length), the length of each buffer, the pickle (protocol 5) then the buffers: large numpy
arrays are sent from their own memory and received straight into memory of their own.
Objects are pickled with :mod:`pickle`, or :mod:`dill` for what pickle refuses (lambdas,
functions of ``__main__``...; dill keeps buffers in-band).
"""

from __future__ import annotations

import mmap
import pickle
import struct
from collections.abc import Sequence
from typing import Any, Protocol

try:
    import dill
except ImportError:  # pragma: no cover - dill is a dependency of computethis
    dill = None

DATA, ABORT, CLOSE = 1, 2, 3  # kinds of frame (an ABORT's tag is the rank that failed)
HEADER = struct.Struct("!BBqIQ")  # kind, serializer (0 pickle, 1 dill), tag, buffers, length
INLINE = 1 << 16  # a pickle up to this size is sent in one piece with its header
LARGE_BUFFER = 1 << 20  # a message's buffer from this size is received into its own mapping


class Channel(Protocol):
    """One authenticated connection (plain TCP or TLS, from :mod:`client_sdk.spmd_comm`)."""

    def send(self, parts: list[Any]) -> None: ...

    def read_into(self, view: memoryview) -> None: ...  # all of it, else EOFError

    def readable(self, timeout: float | None) -> bool: ...  # a byte to read, or its end

    def shutdown(self) -> None: ...

    def close(self) -> None: ...


def read_bytes(channel: Channel, count: int) -> bytearray:
    """The next ``count`` bytes of ``channel``."""
    data = bytearray(count)
    if count:
        channel.read_into(memoryview(data))
    return data


def read_buffer(channel: Channel, count: int) -> bytearray | memoryview:
    """The next ``count`` bytes of ``channel`` as a new writable buffer: a large one in
    memory of its own, mapped for it (filled as it arrives: no zeroing pass first, and no
    huge-page faults of the worker's allocator, whose occasional stalls halved the
    bandwidth of some 64 MiB messages)."""
    if count < LARGE_BUFFER:
        return read_bytes(channel, count)
    view = memoryview(mmap.mmap(-1, count))
    channel.read_into(view)
    return view


def dumps(obj: Any, inband: bool = False) -> tuple[int, bytes, list[memoryview]]:
    """(serializer, pickle, out-of-band buffers) of ``obj``: pickle, else dill."""
    buffers: list[pickle.PickleBuffer] = []
    callback = None if inband else buffers.append
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=callback)
        return 0, data, [buffer.raw() for buffer in buffers]
    except Exception:
        if dill is None:
            raise
    buffers.clear()
    data = dill.dumps(obj, protocol=5, buffer_callback=callback)
    return 1, data, [buffer.raw() for buffer in buffers]


def loads(
    serializer: int, data: bytes | bytearray, buffers: Sequence[bytearray | memoryview]
) -> Any:
    """The object a frame's pickle and buffers carry."""
    if serializer == 1:
        return dill.loads(data, buffers=buffers)
    return pickle.loads(data, buffers=buffers)


def frame(kind: int, tag: int, obj: Any = None) -> list[Any]:
    """The pieces to send of one frame carrying ``obj``."""
    serializer, data, buffers = dumps(obj)
    head = HEADER.pack(kind, serializer, tag, len(buffers), len(data))
    head += struct.pack(f"!{len(buffers)}Q", *(len(buffer) for buffer in buffers))
    return [head + data, *buffers] if len(data) <= INLINE else [head, data, *buffers]
