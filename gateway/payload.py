"""Check that a request body looks like a pickled call, without unpickling it.

The gateway never unpickles user bytes. It does read the pickle *opcodes* with
:func:`pickletools.genops`, which parses the stream but executes nothing, to reject
bodies that are not a complete pickle of a 3-tuple ``(function, args, kwargs)``.
Whether the tuple really holds a function is only known on a worker.
"""

from __future__ import annotations

import pickletools
from typing import IO

# Opcodes that only store the top of the stack in the memo.
_MEMO_OPS = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}


class InvalidPayload(ValueError):
    """The body is not a pickled (function, args, kwargs) call."""


def check_call_payload(stream: IO[bytes]) -> None:
    """Raise :class:`InvalidPayload` unless ``stream`` holds exactly one pickled 3-tuple.

    ``stream`` must be seekable and positioned at the start of the body.
    """
    first = stream.read(2)
    if len(first) < 2 or first[0] != 0x80:
        raise InvalidPayload(
            "the body is not a pickle (protocol 2 or newer); send dill.dumps((func, args, kwargs))"
        )
    stream.seek(0)
    last: str | None = None
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            if opcode.name == "STOP":
                break
            if opcode.name not in _MEMO_OPS:
                last = opcode.name
        else:  # pragma: no cover - genops raises on a missing STOP
            raise InvalidPayload("the pickle has no STOP opcode")
    except InvalidPayload:
        raise
    except Exception as exc:
        raise InvalidPayload(f"the body is not a complete pickle ({exc})") from None
    if stream.read(1):
        raise InvalidPayload("the body has bytes after the end of the pickle")
    if last != "TUPLE3":
        raise InvalidPayload(
            "the pickle is not a (function, args, kwargs) tuple; "
            "send dill.dumps((func, args, kwargs))"
        )
