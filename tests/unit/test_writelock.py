"""gateway.store.writelock.WriteLock: waiters in arrival order, a ``first`` waiter ahead of them."""

from __future__ import annotations

import threading

import pytest

from gateway.store.writelock import WriteLock
from tests.stack import wait_until


def queue_up(lock: WriteLock, names: list[str], order: list[str], first: bool = False):
    """Start a thread per name that waits for ``lock`` and notes its turn; each starts
    once the one before it is waiting (so they arrive in ``names`` order). The lock
    must be held, so that each thread waits."""
    threads = []
    for name in names:
        before = lock.waiting()

        def take(name: str = name) -> None:
            with lock.hold(first=first):
                order.append(name)

        thread = threading.Thread(target=take)
        thread.start()
        wait_until(
            lambda before=before: lock.waiting() != before, "the thread never waited", every=0.001
        )
        threads.append(thread)
    return threads


def test_waiters_get_the_lock_in_arrival_order_and_a_first_one_before_them():
    lock = WriteLock()
    order: list[str] = []
    with lock.hold():
        threads = queue_up(lock, ["a", "b", "c", "d"], order)
        threads += queue_up(lock, ["recorder"], order, first=True)
        assert order == []  # nobody gets in while it is held
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["recorder", "a", "b", "c", "d"]


def test_the_lock_is_released_when_the_block_raises():
    lock = WriteLock()
    with pytest.raises(ValueError), lock.hold():
        raise ValueError("rolled back")
    order: list[str] = []
    with lock.hold():  # held again: so the next one really waits for it
        threads = queue_up(lock, ["next"], order)
    for thread in threads:
        thread.join(timeout=10)
    assert order == ["next"]
