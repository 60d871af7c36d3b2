"""Unit tests for gateway.waiters.Waiters (mailboxes that wake long polls and streams)."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.waiters import Mailbox, Waiters

A = "a" * 32
B = "b" * 32


def test_watch_yields_an_empty_mailbox():
    waiters = Waiters()
    with waiters.watch([A]) as mailbox:
        assert isinstance(mailbox, Mailbox)
        assert mailbox.take(0) == []
        assert not mailbox.closed


def test_watch_takes_job_ids_not_one_id():
    with pytest.raises(TypeError), Waiters().watch(A):
        pass


def test_notify_puts_the_id_in_the_watching_mailbox():
    waiters = Waiters()
    with waiters.watch([A]) as mailbox:
        waiters.notify([A])
        assert mailbox.take(0) == [A]
        assert mailbox.take(0) == []


def test_notify_only_wakes_the_named_jobs():
    waiters = Waiters()
    with waiters.watch([A]) as a, waiters.watch([B]) as b:
        waiters.notify([B])
        assert b.take(0) == [B]
        assert a.take(0) == []
        waiters.notify((A, B))
        assert a.take(0) == [A]


def test_notify_without_watchers_is_harmless():
    waiters = Waiters()
    waiters.notify([])
    waiters.notify([A, B])
    waiters.notify((A,))
    # a notification that nobody was watching for is not remembered
    with waiters.watch([A]) as mailbox:
        assert mailbox.take(0) == []


def test_notify_before_wait_is_not_lost():
    """Watching before checking the status means an early notify still wakes the wait."""
    waiters = Waiters()
    with waiters.watch([A]) as mailbox:
        waiters.notify([A])  # the outcome arrives between the check and the wait
        started = time.monotonic()
        assert mailbox.take(5) == [A]
        assert time.monotonic() - started < 1


def test_concurrent_watchers_of_one_job_are_all_woken():
    waiters = Waiters()
    with waiters.watch([A]) as first:
        with waiters.watch([A]) as second:
            assert first is not second
            waiters.notify([A])
            assert second.take(0) == [A]
        assert first.take(0) == [A]
        # the inner watch ended; the outer one must still be woken
        waiters.notify([A])
        assert first.take(0) == [A]


def test_mailbox_is_forgotten_after_the_last_watcher_leaves():
    waiters = Waiters()
    with waiters.watch([A]) as old:
        waiters.notify([A])
    assert waiters.watched() == set()
    waiters.notify([A])  # after the block: nobody is told, nothing is kept
    with waiters.watch([A]) as new:
        assert new is not old
        assert new.take(0) == []


def test_job_is_watched_while_a_watcher_remains():
    waiters = Waiters()
    with waiters.watch([A]) as outer:
        with waiters.watch([A]):
            pass
        assert waiters.watched() == {A}
        with waiters.watch([A]) as again:
            waiters.notify([A])
            assert again.take(0) == [A]
        assert outer.take(0) == [A]
    assert waiters.watched() == set()


def test_watch_cleans_up_when_the_body_raises():
    waiters = Waiters()
    with pytest.raises(RuntimeError), waiters.watch([A]) as first:
        waiters.notify([A])
        raise RuntimeError("request failed")
    assert waiters.watched() == set()
    with waiters.watch([A]) as second:
        assert second is not first
        assert second.take(0) == []


def test_notify_wakes_a_waiting_thread():
    waiters = Waiters()
    ready = threading.Event()
    woke: list[list[str]] = []

    def long_poll() -> None:
        with waiters.watch([A]) as mailbox:
            ready.set()
            woke.append(mailbox.take(10))

    thread = threading.Thread(target=long_poll)
    thread.start()
    assert ready.wait(5)
    started = time.monotonic()
    waiters.notify([A])
    thread.join(5)
    assert not thread.is_alive()
    assert woke == [[A]]
    assert time.monotonic() - started < 2


def test_unnotified_wait_times_out():
    waiters = Waiters()
    with waiters.watch([A]) as mailbox:
        waiters.notify([B])
        started = time.monotonic()
        assert mailbox.take(0.05) == []
        assert time.monotonic() - started >= 0.04


def test_many_threads_watching_and_notifying():
    waiters = Waiters()
    ids = [f"{i:032x}" for i in range(20)]
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(ids) * 2 + 1)

    def poll(job_id: str) -> None:
        with waiters.watch([job_id]) as mailbox:
            barrier.wait(5)
            results[job_id] = mailbox.take(10)

    def second_poll(job_id: str) -> None:
        with waiters.watch([job_id]) as mailbox:
            barrier.wait(5)
            mailbox.take(10)

    threads = [threading.Thread(target=poll, args=(job_id,)) for job_id in ids]
    threads += [threading.Thread(target=second_poll, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    barrier.wait(5)
    waiters.notify(ids)
    for thread in threads:
        thread.join(5)
    assert all(not thread.is_alive() for thread in threads)
    assert results == {job_id: [job_id] for job_id in ids}
    # all entries were released: new watches get empty mailboxes
    assert waiters.watched() == set()
    for job_id in ids:
        with waiters.watch([job_id]) as mailbox:
            assert mailbox.take(0) == []


def test_watching_several_collects_each_notified_id_once_taken():
    waiters = Waiters()
    with waiters.watch([A, B, A]) as mailbox:
        assert mailbox.take(0.01) == []
        waiters.notify([B, "c" * 32])
        waiters.notify([A])
        assert mailbox.take(0.01) == [B, A]
        assert mailbox.take(0.01) == []
    waiters.notify([A])  # after the block: nobody is told, nothing is kept
    assert waiters.watched() == set()


def test_a_waiting_mailbox_of_several_is_woken_and_other_watches_are_too():
    waiters = Waiters()
    ready = threading.Event()

    def notify_once_ready() -> None:
        assert ready.wait(5)
        waiters.notify([A])

    notifier = threading.Thread(target=notify_once_ready)
    with waiters.watch([A]) as single, waiters.watch([A, B]) as several:
        notifier.start()
        started = time.monotonic()
        ready.set()  # take() below is woken whether the notify comes before or after it
        assert several.take(5) == [A]
        assert time.monotonic() - started < 2
        notifier.join(5)
        assert single.take(0) == [A]
    with waiters.watch([A]) as again:
        assert again.take(0) == []


def test_close_wakes_every_waiting_request_and_every_later_one():
    """A stopping gateway closes its waiters: long-polls answer at once."""
    waiters = Waiters()
    woken: list[str] = []
    waiting = threading.Barrier(3)

    def wait_single() -> None:
        with waiters.watch([A]) as mailbox:
            waiting.wait()
            assert mailbox.take(30) == []
            woken.append("single" if mailbox.closed else "timed out")

    def wait_several() -> None:
        with waiters.watch([A, B]) as mailbox:
            waiting.wait()
            assert mailbox.take(30) == []
            woken.append("several" if mailbox.closed else "timed out")

    threads = [threading.Thread(target=wait_single), threading.Thread(target=wait_several)]
    for thread in threads:
        thread.start()
    waiting.wait()
    started = time.monotonic()
    waiters.close()
    for thread in threads:
        thread.join(10)
    assert sorted(woken) == ["several", "single"]
    assert time.monotonic() - started < 5
    with waiters.watch([B]) as mailbox:
        assert mailbox.closed
    with waiters.watch([A]) as mailbox:
        assert mailbox.closed
        started = time.monotonic()
        assert mailbox.take(30) == []
        assert time.monotonic() - started < 5
