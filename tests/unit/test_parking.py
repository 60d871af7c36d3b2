"""The parking lot wakes a parked answer once: on mail, at its deadline, or when closed."""

from __future__ import annotations

import threading
import time

from gateway.parking import Parked, Parking, ParkingLot
from gateway.waiters import Waiters
from gateway.waiting import Wait, blocking_body


class Conn:
    """Stands in for a connection: only its ``parking`` is read."""

    parking: Parking | None = None


def parked(wait: Wait) -> Conn:
    conn = Conn()
    conn.parking = Parking(req=None, parked=Parked(wait, lambda: None))
    return conn


def lot_and_woken() -> tuple[ParkingLot, list[Conn], threading.Event]:
    woken: list[Conn] = []
    event = threading.Event()

    def wake(conn: Conn) -> None:
        woken.append(conn)
        event.set()

    return ParkingLot(wake), woken, event


def test_mail_wakes_a_parked_answer_once():
    waiters = Waiters()
    lot, woken, event = lot_and_woken()
    with waiters.watch(["a"]) as mailbox:
        conn = parked(Wait.up_to(mailbox, 0.3))
        lot.park(conn)
        assert len(lot) == 1 and woken == []
        waiters.notify(["a"])
        assert event.wait(5) and woken == [conn]
        assert len(lot) == 0
        time.sleep(0.5)  # its deadline passes: not woken again
        assert woken == [conn]
    lot.close()


def test_the_deadline_wakes_a_parked_answer_without_mail():
    lot, woken, event = lot_and_woken()
    with Waiters().watch(["a"]) as mailbox:
        conn = parked(Wait.up_to(mailbox, 0.2))
        started = time.monotonic()
        lot.park(conn)
        assert event.wait(5) and woken == [conn]
        assert time.monotonic() - started >= 0.19
    lot.close()


def test_mail_already_there_wakes_at_once():
    waiters = Waiters()
    lot, woken, _ = lot_and_woken()
    with waiters.watch(["a"]) as mailbox:
        waiters.notify(["a"])
        conn = parked(Wait.up_to(mailbox, 60))
        lot.park(conn)
        assert woken == [conn]  # on this thread, before park returned
    lot.close()


def test_stopping_wakes_every_parked_answer():
    waiters = Waiters()
    lot, woken, _ = lot_and_woken()
    with waiters.watch(["a"]) as one, waiters.watch(["b"]) as two:
        conns = [parked(Wait.up_to(one, 60)), parked(Wait.up_to(two, 60))]
        for conn in conns:
            lot.park(conn)
        waiters.close()  # what a stopping gateway does first
        assert sorted(map(id, woken)) == sorted(map(id, conns))
    lot.close()
    with Waiters().watch(["c"]) as three:
        late = parked(Wait.up_to(three, 60))
        lot.park(late)  # parked after the lot closed: answered at once
        assert woken[-1] is late


def test_without_parking_a_wait_blocks_its_thread_until_mail():
    waiters = Waiters()
    with waiters.watch(["a"]) as mailbox:
        threading.Timer(0.2, waiters.notify, [["a"]]).start()
        started = time.monotonic()
        chunks = list(blocking_body([b"x", Wait.up_to(mailbox, 30), b"y"]))
        assert chunks == [b"x", b"y"]
        assert 0.15 < time.monotonic() - started < 10
