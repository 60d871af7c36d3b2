"""Answers that wait for jobs, written once for the gateway's server (no thread while they
wait) and for any other WSGI server (a thread blocks).

A view that must wait (a long-poll of one job, a stream of outcomes) *yields* a
:class:`Wait` (a mailbox and a deadline) where it would block:

- a streamed body, an iterator of bytes, yields Waits between its chunks
  (:func:`stream_body` readies it for the server at hand);
- an answer whose status depends on the wait is a generator that yields Waits and
  returns the view's answer; :func:`answer_after` runs it to its first Wait and wraps the
  rest as a :class:`Later` response, whose body is those Waits and then the answer
  (started once known: WSGI lets ``start_response`` wait for the first bytes).

The gateway's own server (:mod:`gateway.parking`) marks the WSGI environ with
:data:`PARKING`: at each Wait it parks the connection (a socket and the suspended
generator, no thread) until the mailbox has mail or the deadline passes, then a thread
takes it up again. Elsewhere (Flask's test client, another WSGI server) each Wait blocks
its thread, as :meth:`Wait.block` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, request

from gateway.waiters import Mailbox

PARKING = "computethis.parking"  # in the WSGI environ: the server parks waiting answers

Steps = Generator["Wait", None, Any]  # a view's steps: Waits, then the view's answer


@dataclass(frozen=True)
class Wait:
    """Nothing to send until ``mailbox`` has mail (or closes) or ``deadline`` (a
    ``time.monotonic()`` value) passes."""

    mailbox: Mailbox
    deadline: float

    @classmethod
    def up_to(cls, mailbox: Mailbox, seconds: float) -> Wait:
        """A wait on ``mailbox`` for at most ``seconds`` from now."""
        return cls(mailbox, time.monotonic() + seconds)

    def over(self) -> bool:
        """Whether there is nothing left to wait for."""
        return self.mailbox.has_mail() or time.monotonic() >= self.deadline

    def block(self) -> None:
        """Wait on this thread until the wait is over."""
        self.mailbox.wait(max(0.0, self.deadline - time.monotonic()))


def parking() -> bool:
    """Whether the server answering the current request parks waiting answers."""
    return bool(request.environ.get(PARKING))


def stream_body(chunks: Iterable[bytes | Wait]) -> Iterable[bytes | Wait]:
    """A streamed body for the current request's server: as it is where the server
    parks at its Waits; else with each Wait blocking its thread."""
    return chunks if parking() else blocking_body(chunks)


def blocking_body(chunks: Iterable[bytes | Wait]) -> Iterator[bytes]:
    """``chunks`` with each Wait blocking this thread until it is over."""
    for chunk in chunks:
        if isinstance(chunk, Wait):
            chunk.block()
        else:
            yield chunk


class Later(Response):
    """The answer a view's generator (``steps``) returns once its waits are over; the
    first of them is ``wait``. Each step after a wait runs in a request context of the
    same environ (``request``, the caller's tenant, the app's services), and an error
    it raises is answered by the app's error handlers, as the view's own would be."""

    def __init__(self, steps: Steps, wait: Wait) -> None:
        super().__init__()
        self.steps = steps
        self.wait = wait
        self.app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]

    def advance(self, environ: dict[str, Any]) -> Response | None:
        """Run the view on past ``wait``: its answer, or None when it waits again (the
        new ``wait``)."""
        with self.app.request_context(environ):
            try:
                self.wait = self.steps.send(None)
            except StopIteration as done:
                return self.app.make_response(done.value)
            except Exception as exc:  # noqa: BLE001 - answered as the view's errors are
                return self.app.make_response(self.app.handle_user_exception(exc))
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """A WSGI body: the Waits, then the answer (its status and headers start when
        it is known). Where the server parks, it parks at the Waits; elsewhere they
        block this thread."""
        body = self._body(environ, start_response)
        return body if environ.get(PARKING) else blocking_body(body)

    def _body(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes | Wait]:
        try:
            while True:
                yield self.wait
                answer = self.advance(environ)
                if answer is not None:
                    yield from answer(environ, start_response)
                    return
        finally:
            self.steps.close()


def answer_after(steps: Steps) -> Any:
    """The view's answer: what ``steps`` returns if it never waits, else a :class:`Later`
    that answers after its waits. Errors before the first wait are raised here."""
    try:
        wait = next(steps)
    except StopIteration as done:
        return done.value
    return Later(steps, wait)
