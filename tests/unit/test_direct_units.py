"""Direct calls' parts without I/O (gateway/dask/direct.py): the
``computethis.direct-calls`` Dask setting, and what is kept of the workers."""

from __future__ import annotations

import dask
import pytest

from gateway.dask.direct import SETTING, DirectCalls, enabled


def test_direct_calls_are_on_by_default() -> None:
    assert enabled()


@pytest.mark.parametrize("value", [False, "false", "0", "off", "no"])
def test_direct_calls_can_be_turned_off(value: object) -> None:
    with dask.config.set({SETTING: value}):
        assert not enabled()


def test_what_was_known_of_workers_that_left_is_dropped() -> None:
    calls = DirectCalls(link=None, store=None, resubmit=lambda job, payload: None)  # type: ignore[arg-type]
    calls._reachable.update({"tcp://a:1": 1.0, "tcp://gone:1": 1.0})
    calls._unreachable.update({"tcp://b:1": 1.0, "tcp://gone:2": 1.0})
    calls._busy_until.update({"tcp://a:1": 1.0, "tcp://gone:1": 1.0})
    calls.forget_gone(["tcp://a:1", "tcp://b:1"])
    assert calls._reachable == {"tcp://a:1": 1.0}
    assert calls._unreachable == {"tcp://b:1": 1.0}
    assert calls._busy_until == {"tcp://a:1": 1.0}
