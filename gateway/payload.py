"""Check that a request body looks like a pickled call, without unpickling it.

The gateway never unpickles user bytes. It does walk the pickle's *opcodes* (with
the opcode table of :mod:`pickletools`), which parses the stream but executes
nothing, to reject bodies that are not a complete pickle of a 3-tuple
``(function, args, kwargs)``. Length-prefixed arguments (bytes, strings, arrays) are
skipped with a seek, so checking a 256 MB body reads only its opcodes.
Whether the tuple really holds a function is only known on a worker. The SDK may
append an index of the pickle's large buffers after its STOP opcode
(:mod:`client_sdk.buffer_index`); only its layout is checked.
"""

from __future__ import annotations

import pickletools
from collections.abc import Iterator
from typing import IO

from client_sdk import buffer_index

# Opcodes that only store the top of the stack in the memo.
_MEMO_OPS = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}


class InvalidPayload(ValueError):
    """The body is not a pickled (function, args, kwargs) call."""


# Width and signedness of the length prefix of variable-length arguments.
_LENGTH_PREFIX = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


def _opcodes(stream: IO[bytes], size: int) -> Iterator[str]:
    """Yield the names of the opcodes up to and including STOP, skipping their data."""
    while True:
        code = stream.read(1)
        if not code:
            raise InvalidPayload("the body is not a complete pickle (no STOP opcode)")
        opcode = pickletools.code2op.get(code.decode("latin-1"))
        if opcode is None:
            raise InvalidPayload(f"the body is not a complete pickle (unknown opcode {code!r})")
        argument = opcode.arg
        if argument is not None:
            if argument.n >= 0:
                if len(stream.read(argument.n)) < argument.n:
                    raise InvalidPayload("the body is not a complete pickle (truncated)")
            elif argument.n == pickletools.UP_TO_NEWLINE:
                argument.reader(stream)  # short text arguments (names, numbers)
            else:
                width, signed = _LENGTH_PREFIX[argument.n]
                prefix = stream.read(width)
                length = int.from_bytes(prefix, "little", signed=signed)
                if len(prefix) < width or length < 0 or stream.tell() + length > size:
                    raise InvalidPayload("the body is not a complete pickle (truncated)")
                stream.seek(length, 1)
        yield opcode.name
        if opcode.name == "STOP":
            return


def check_call_payload(stream: IO[bytes]) -> None:
    """Raise :class:`InvalidPayload` unless ``stream`` holds exactly one pickled 3-tuple.

    ``stream`` must be seekable and positioned at the start of the body.
    """
    first = stream.read(2)
    if len(first) < 2 or first[0] != 0x80:
        raise InvalidPayload(
            "the body is not a pickle (protocol 2 or newer); send dill.dumps((func, args, kwargs))"
        )
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    last: str | None = None
    try:
        for name in _opcodes(stream, size):
            if name not in _MEMO_OPS and name != "STOP":
                last = name
    except InvalidPayload:
        raise
    except Exception as exc:
        raise InvalidPayload(f"the body is not a complete pickle ({exc})") from None
    tail = stream.read(buffer_index.MAX_SIZE + 1)
    if tail and buffer_index.size_if_index(tail) is None:
        raise InvalidPayload("the body has bytes after the end of the pickle")
    if last != "TUPLE3":
        raise InvalidPayload(
            "the pickle is not a (function, args, kwargs) tuple; "
            "send dill.dumps((func, args, kwargs))"
        )
