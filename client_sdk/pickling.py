"""dill pickling that writes large buffers (numpy arrays, bytes) without copying them.

dill pickles a numpy array through ``ndarray.__reduce__``, which copies its memory into
a bytes object, and ``dill.dumps`` copies everything once more into one bytes object:
about 0.8 s for a 256 MB array here. :func:`dump_buffers` pickles with protocol 5,
where an array exposes its memory as a :class:`pickle.PickleBuffer`, and writes that
memory in-band (the standard ``BYTEARRAY8`` opcode, so ``dill.loads`` reads the result
as usual) as a view: the output is a list of buffers that refers to the array instead
of holding a copy of it. With ``index=True`` the positions of those buffers follow the
pickle (see :mod:`wire.buffer_index`), and :func:`load_buffers` unpickles them
as views of the received bytes, without copying them back out.
"""

from __future__ import annotations

import pickle
import struct
import sys
from collections.abc import Iterator
from typing import Any

import dill

from wire import buffer_index

PROTOCOL = 5
# Buffers at least this large are written as views; smaller ones are copied into the
# current pickle frame (pickle's own threshold for writing bytes outside a frame).
LARGE_BUFFER = 1 << 16

Buffer = bytes | bytearray | memoryview


class Pickled:
    """Pickled bytes as a list of buffers; ``len()`` is their total size in bytes.

    Large buffers are views of the pickled objects' memory: keep the objects unchanged
    until the bytes are sent. Iterating yields the buffers in order; ``bytes()`` joins
    them (one copy).
    """

    def __init__(self) -> None:
        self.buffers: list[Buffer] = []
        self.nbytes = 0
        self.spans: list[buffer_index.Span] = []  # large buffers written as views

    def write(self, data: Buffer) -> int:
        """Append ``data`` (the file interface the pickler writes to)."""
        size = memoryview(data).nbytes
        self.buffers.append(data)
        self.nbytes += size
        return size

    def __len__(self) -> int:
        return self.nbytes

    def __iter__(self) -> Iterator[Buffer]:
        return iter(self.buffers)

    def __bytes__(self) -> bytes:
        return b"".join(self.buffers)


class _Dispatch(dict):
    """This pickler's own entries, falling back to dill's (which grows as dill runs)."""

    def get(self, key: Any, default: Any = None) -> Any:
        found = dict.get(self, key)
        return found if found is not None else dill.Pickler.dispatch.get(key, default)


class BufferPickler(dill.Pickler):
    """A dill pickler that writes contiguous numpy arrays' memory as views."""

    dispatch = _Dispatch()

    def __init__(self, file: Pickled, **kwargs: Any) -> None:
        super().__init__(file, PROTOCOL, **kwargs)
        self._out = file
        numpy = sys.modules.get("numpy")  # an array can only exist if numpy is imported
        self._ndarray = getattr(numpy, "ndarray", None)

    def reducer_override(self, obj: Any) -> Any:
        # A plain array reduces to a PickleBuffer of its memory (dill's own rule for
        # arrays would copy it); subclasses and everything else go the usual way.
        if type(obj) is self._ndarray:  # never true without numpy: type() is not None
            return obj.__reduce_ex__(PROTOCOL)
        return NotImplemented

    def save_picklebuffer(self, obj: pickle.PickleBuffer) -> None:
        view = obj.raw()  # not released: the output refers to it
        if not view.contiguous:
            raise pickle.PicklingError("a PickleBuffer of non-contiguous memory cannot be pickled")
        opcode = pickle.BINBYTES8 if view.readonly else pickle.BYTEARRAY8
        header = opcode + struct.pack("<Q", view.nbytes)
        if view.nbytes < LARGE_BUFFER:
            self.write(header + view.tobytes())
        else:
            self.framer.commit_frame(force=True)  # the opcode goes right after this frame
            self._out.spans.append((self._out.nbytes, view.nbytes))
            self._write_large_bytes(header, view)

    dispatch[pickle.PickleBuffer] = save_picklebuffer


def dump_buffers(obj: Any, *, index: bool = False, **kwargs: Any) -> Pickled:
    """Pickle ``obj`` with dill (protocol 5); ``kwargs`` go to dill's Pickler (``recurse``...).

    ``index=True`` appends the index of the large buffers, if there are any, for
    :func:`load_buffers` (other unpicklers ignore it).
    """
    out = Pickled()
    BufferPickler(out, **kwargs).dump(obj)
    if index and out.spans:
        out.write(buffer_index.encode(out.spans))
    return out


def load_buffers(data: Buffer) -> Any:
    """``dill.loads(data)``, taking indexed large buffers as views of ``data`` (no copy).

    A buffer that was writable comes back writable: if ``data`` is read-only (bytes),
    that one buffer is copied. Without a valid index this is plain ``dill.loads``.
    """
    view = memoryview(data).cast("B")
    found = buffer_index.read(view)
    if found is not None:
        try:
            stream, buffers = _out_of_band(view, *found)
        except ValueError:
            pass  # not an index this pickle matches: read it the usual way
        else:
            return dill.loads(stream, buffers=buffers)
    return dill.loads(data)


_HEADER = 9  # opcode byte and u64 length
_BYTEARRAY8 = pickle.BYTEARRAY8[0]
_BINBYTES8 = pickle.BINBYTES8[0]


def _out_of_band(
    view: memoryview, end: int, spans: list[buffer_index.Span]
) -> tuple[bytes, list[Buffer]]:
    """The pickle with each indexed buffer replaced by ``NEXT_BUFFER``, and the buffers.

    Raises ValueError unless every span is an in-band buffer opcode of that length, in
    order, inside the pickle.
    """
    parts: list[Buffer] = []
    buffers: list[Buffer] = []
    position = 0
    for offset, length in spans:
        start = offset + _HEADER
        if offset < position or start + length > end:
            raise ValueError("buffer index out of order or out of range")
        opcode = view[offset]
        if opcode not in (_BYTEARRAY8, _BINBYTES8) or (
            int.from_bytes(view[offset + 1 : start], "little") != length
        ):
            raise ValueError("buffer index does not match the pickle")
        parts.append(view[position:offset])
        buffer = view[start : start + length]
        if opcode == _BYTEARRAY8:
            parts.append(pickle.NEXT_BUFFER)
            buffers.append(bytearray(buffer) if view.readonly else buffer)
        else:
            parts.append(pickle.NEXT_BUFFER + pickle.READONLY_BUFFER)
            buffers.append(buffer)
        position = start + length
    parts.append(view[position:end])
    return b"".join(parts), buffers
