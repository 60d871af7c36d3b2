"""The ``computethis.direct-calls`` Dask setting (gateway/dask/direct.py)."""

from __future__ import annotations

import dask
import pytest

from gateway.dask.direct import SETTING, enabled


def test_direct_calls_are_on_by_default() -> None:
    assert enabled()


@pytest.mark.parametrize("value", [False, "false", "0", "off", "no"])
def test_direct_calls_can_be_turned_off(value: object) -> None:
    with dask.config.set({SETTING: value}):
        assert not enabled()
