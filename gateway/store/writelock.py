"""The job store's write lock: request threads take turns in order, and one thread that
writes first (the recorder) goes ahead of them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteLock:
    """A lock whose waiters get it in the order they came (a thread arriving just as it
    is released may go first), except that a waiter marked ``first`` gets it before
    every other waiter.

    The recorder's writes wake callers waiting for results and let the scheduler drop
    finished tasks; behind 20 queued submissions (a plain lock hands itself to any
    waiter) it waited 100-200 ms at a time.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._first = threading.Condition(self._mutex)
        self._others = threading.Condition(self._mutex)
        self._first_waiting = 0
        self._others_waiting = 0

    def waiting(self) -> tuple[int, int]:
        """How many threads wait for the lock now: ``(first, others)``."""
        with self._mutex:
            return self._first_waiting, self._others_waiting

    @contextmanager
    def hold(self, first: bool = False) -> Iterator[None]:
        """Hold the lock for the ``with`` block; ``first`` goes before other waiters."""
        with self._mutex:
            if first:
                self._first_waiting += 1
                try:
                    while self._held:
                        self._first.wait()
                finally:  # even if the wait is interrupted: others would wait for good
                    self._first_waiting -= 1
            else:
                self._others_waiting += 1
                try:
                    while self._held or self._first_waiting:
                        self._others.wait()
                finally:
                    self._others_waiting -= 1
            self._held = True
        try:
            yield
        finally:
            with self._mutex:
                self._held = False
                if self._first_waiting:
                    self._first.notify()
                elif self._others_waiting:
                    self._others.notify()
