"""Unit tests for gateway.waiters.Waiters (per-job events for long polls)."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.waiters import Waiters

A = "a" * 32
B = "b" * 32


def test_watch_yields_an_unset_event():
    waiters = Waiters()
    with waiters.watch(A) as event:
        assert isinstance(event, threading.Event)
        assert not event.is_set()


def test_notify_sets_the_watched_event():
    waiters = Waiters()
    with waiters.watch(A) as event:
        waiters.notify([A])
        assert event.is_set()
        assert event.wait(0)


def test_notify_only_wakes_the_named_jobs():
    waiters = Waiters()
    with waiters.watch(A) as a, waiters.watch(B) as b:
        waiters.notify([B])
        assert b.is_set()
        assert not a.is_set()
        waiters.notify((A, B))
        assert a.is_set()


def test_notify_without_watchers_is_harmless():
    waiters = Waiters()
    waiters.notify([])
    waiters.notify([A, B])
    waiters.notify((A,))
    # a notification that nobody was watching for is not remembered
    with waiters.watch(A) as event:
        assert not event.is_set()


def test_notify_before_wait_is_not_lost():
    """Registering before checking the status means an early notify still wakes the wait."""
    waiters = Waiters()
    with waiters.watch(A) as event:
        waiters.notify([A])  # the outcome arrives between the check and the wait
        started = time.monotonic()
        assert event.wait(5)
        assert time.monotonic() - started < 1


def test_concurrent_watchers_of_one_job_share_the_event():
    waiters = Waiters()
    with waiters.watch(A) as first:
        with waiters.watch(A) as second:
            assert first is second
        # the inner watch ended; the outer one must still be woken
        waiters.notify([A])
        assert first.is_set()


def test_event_is_forgotten_after_the_last_watcher_leaves():
    waiters = Waiters()
    with waiters.watch(A) as old:
        waiters.notify([A])
    with waiters.watch(A) as new:
        assert new is not old
        assert not new.is_set()


def test_event_is_kept_while_a_watcher_remains():
    waiters = Waiters()
    with waiters.watch(A) as outer:
        with waiters.watch(A):
            pass
        with waiters.watch(A) as again:
            assert again is outer


def test_watch_cleans_up_when_the_body_raises():
    waiters = Waiters()
    with pytest.raises(RuntimeError), waiters.watch(A) as first:
        waiters.notify([A])
        raise RuntimeError("request failed")
    with waiters.watch(A) as second:
        assert second is not first
        assert not second.is_set()


def test_notify_wakes_a_waiting_thread():
    waiters = Waiters()
    ready = threading.Event()
    woke: list[bool] = []

    def long_poll() -> None:
        with waiters.watch(A) as event:
            ready.set()
            woke.append(event.wait(10))

    thread = threading.Thread(target=long_poll)
    thread.start()
    assert ready.wait(5)
    started = time.monotonic()
    waiters.notify([A])
    thread.join(5)
    assert not thread.is_alive()
    assert woke == [True]
    assert time.monotonic() - started < 2


def test_unnotified_wait_times_out():
    waiters = Waiters()
    with waiters.watch(A) as event:
        waiters.notify([B])
        assert event.wait(0.05) is False


def test_many_threads_watching_and_notifying():
    waiters = Waiters()
    ids = [f"{i:032x}" for i in range(20)]
    results: dict[str, bool] = {}
    barrier = threading.Barrier(len(ids) * 2 + 1)

    def poll(job_id: str) -> None:
        with waiters.watch(job_id) as event:
            barrier.wait(5)
            results[job_id] = event.wait(10)

    def second_poll(job_id: str) -> None:
        with waiters.watch(job_id) as event:
            barrier.wait(5)
            event.wait(10)

    threads = [threading.Thread(target=poll, args=(job_id,)) for job_id in ids]
    threads += [threading.Thread(target=second_poll, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    barrier.wait(5)
    waiters.notify(ids)
    for thread in threads:
        thread.join(5)
    assert all(not thread.is_alive() for thread in threads)
    assert results == {job_id: True for job_id in ids}
    # all entries were released: new watches get fresh events
    for job_id in ids:
        with waiters.watch(job_id) as event:
            assert not event.is_set()


def test_watch_any_collects_each_notified_id_once_taken():
    waiters = Waiters()
    with waiters.watch_any([A, B, A]) as notified:
        assert notified.take(0.01) == []
        waiters.notify([B, "c" * 32])
        waiters.notify([A])
        assert notified.take(0.01) == [B, A]
        assert notified.take(0.01) == []
    waiters.notify([A])  # after the block: nobody is told, nothing is kept
    assert waiters._any_of == {}


def test_watch_any_wakes_a_waiting_thread_and_leaves_single_watches_alone():
    waiters = Waiters()
    with waiters.watch(A) as single, waiters.watch_any([A]) as notified:
        threading.Timer(0.1, waiters.notify, args=([A],)).start()
        started = time.monotonic()
        assert notified.take(5) == [A]
        assert time.monotonic() - started < 2
        assert single.is_set()
    with waiters.watch(A) as again:
        assert not again.is_set()


def test_close_wakes_every_waiting_request_and_every_later_one():
    """A stopping gateway closes its waiters: long-polls answer at once."""
    waiters = Waiters()
    woken: list[str] = []
    waiting = threading.Barrier(3)

    def wait_single() -> None:
        with waiters.watch(A) as event:
            waiting.wait()
            if event.wait(30):
                woken.append("watch")

    def wait_any() -> None:
        with waiters.watch_any([A, B]) as notified:
            waiting.wait()
            assert notified.take(30) == []
            woken.append("watch_any" if notified.closed else "timed out")

    threads = [threading.Thread(target=wait_single), threading.Thread(target=wait_any)]
    for thread in threads:
        thread.start()
    waiting.wait()
    started = time.monotonic()
    waiters.close()
    for thread in threads:
        thread.join(10)
    assert sorted(woken) == ["watch", "watch_any"]
    assert time.monotonic() - started < 5
    with waiters.watch(B) as event:
        assert event.is_set()
    with waiters.watch_any([A]) as notified:
        assert notified.closed
        assert notified.take(30) == []
