"""The batched-send interval setting (scheduler.config.send_interval, shorten_stream)."""

from __future__ import annotations

import dask
from distributed.batched import BatchedSend

from scheduler.config import SEND_INTERVAL_KEY, send_interval, shorten_stream


def test_default_sends_at_once():
    assert send_interval() == 0


def test_a_duration_and_dask_own():
    with dask.config.set({SEND_INTERVAL_KEY: "2ms"}):
        assert send_interval() == 0.002
    with dask.config.set({SEND_INTERVAL_KEY: "dask"}):
        assert send_interval() is None


def test_shorten_only_shortens():
    stream = BatchedSend(interval="5ms")
    shorten_stream(stream, None)
    assert stream.interval == 0.005
    shorten_stream(stream, 0.01)
    assert stream.interval == 0.005
    shorten_stream(stream, 0.0)
    assert stream.interval == 0
    shorten_stream(None, 0.0)  # no stream yet: nothing to do
