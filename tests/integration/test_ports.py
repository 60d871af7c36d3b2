"""Ports the tests and benchmarks give their services: never ones the system hands out."""

from __future__ import annotations

import socket

from benchmarks.ports import ephemeral_range, free_port


def test_free_ports_lie_outside_the_ephemeral_range_and_can_be_bound():
    first, last = ephemeral_range()
    assert 1024 <= first <= last <= 65535
    ports = {free_port() for _ in range(50)}
    assert len(ports) > 1  # picked at random, not one fixed port
    for port in ports:
        assert not first <= port <= last, port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
