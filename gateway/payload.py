"""Check that a request body looks like a pickled call, without unpickling it.

The gateway never unpickles user bytes. It does walk the pickle's *opcodes* (with
the opcode table of :mod:`pickletools`), which parses the stream but executes
nothing, to reject bodies that are not a complete pickle of a 3-tuple
``(function, args, kwargs)``. Length-prefixed arguments (bytes, strings, arrays) are
skipped, so checking a 256 MB body (a memory map of its file) reads only its opcodes.
Whether the tuple really holds a function is only known on a worker. The SDK may
append an index of the pickle's large buffers after its STOP opcode
(:mod:`wire.buffer_index`); only its layout is checked.
"""

from __future__ import annotations

import io
import pickletools
from typing import NamedTuple

from wire import buffer_index

# Opcodes that only store the top of the stack in the memo.
_MEMO_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
# The longest newline-terminated argument (a text opcode's name or number) accepted.
MAX_LINE = 64 * 1024


class InvalidPayload(ValueError):
    """The body is not a pickled (function, args, kwargs) call."""


class _Op(NamedTuple):
    """How to step over one opcode: its name and the shape of its argument."""

    name: str
    fixed: int  # bytes of a fixed-size argument, 0 if it has none
    prefix: int  # width of a length prefix, 0 if the argument is not length-prefixed
    signed: bool  # whether that length prefix is signed
    line: pickletools.ArgumentDescriptor | None  # a newline-terminated argument


# Width and signedness of the length prefix of variable-length arguments.
_LENGTH_PREFIX = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


def _opcode_table() -> list[_Op | None]:
    """Every opcode byte's step, indexed by the byte (None: not an opcode)."""
    table: list[_Op | None] = [None] * 256
    for opcode in pickletools.opcodes:
        argument = opcode.arg
        if argument is None:
            step = _Op(opcode.name, 0, 0, False, None)
        elif argument.n >= 0:
            step = _Op(opcode.name, argument.n, 0, False, None)
        elif argument.n == pickletools.UP_TO_NEWLINE:
            step = _Op(opcode.name, 0, 0, False, argument)
        else:
            width, signed = _LENGTH_PREFIX[argument.n]
            step = _Op(opcode.name, 0, width, signed, None)
        table[ord(opcode.code)] = step
    return table


_OPCODES = _opcode_table()


def _last_value_opcode(body: bytes | memoryview) -> tuple[str | None, int]:
    """Walk the opcodes up to STOP; return the last one that built a value (memo
    stores aside) and the offset just past STOP."""
    opcodes, memo_ops = _OPCODES, _MEMO_OPS
    size = len(body)
    position = 0
    last: str | None = None
    while True:
        if position >= size:
            raise InvalidPayload("the body is not a complete pickle (no STOP opcode)")
        step = opcodes[body[position]]
        if step is None:
            code = bytes(body[position : position + 1])
            raise InvalidPayload(f"the body is not a complete pickle (unknown opcode {code!r})")
        name, fixed, prefix, signed, line = step
        position += 1
        if fixed:
            position += fixed
        elif prefix:
            end = position + prefix
            length = int.from_bytes(body[position:end], "little", signed=signed)
            position = end + length if length >= 0 else size + 1
        elif line is not None:
            position += _line_argument(line, body[position : position + MAX_LINE])
        if position > size:
            raise InvalidPayload("the body is not a complete pickle (truncated)")
        if name == "STOP":
            return last, position
        if name not in memo_ops:
            last = name


def _line_argument(argument: pickletools.ArgumentDescriptor, window: bytes | memoryview) -> int:
    """Parse a text opcode's newline-terminated argument(s); return its length."""
    stream = io.BytesIO(window)
    try:
        argument.reader(stream)
    except Exception as exc:
        raise InvalidPayload(f"the body is not a complete pickle ({exc})") from None
    return stream.tell()


def check_call_payload(body: bytes | memoryview) -> None:
    """Raise :class:`InvalidPayload` unless ``body`` holds exactly one pickled 3-tuple.

    ``body`` is the whole request body, in memory or a memory map of its file.
    """
    if len(body) < 2 or body[0] != 0x80:
        raise InvalidPayload(
            "the body is not a pickle (protocol 2 or newer); send dill.dumps((func, args, kwargs))"
        )
    last, end = _last_value_opcode(body)
    tail = body[end : end + buffer_index.MAX_SIZE + 1]
    if len(tail) and buffer_index.size_if_index(tail) is None:
        raise InvalidPayload("the body has bytes after the end of the pickle")
    if last != "TUPLE3":
        raise InvalidPayload(
            "the pickle is not a (function, args, kwargs) tuple; "
            "send dill.dumps((func, args, kwargs))"
        )
