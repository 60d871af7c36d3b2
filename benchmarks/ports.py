"""Ports for services that a test or benchmark starts itself, at an address chosen first.

A port found free by binding port 0 comes from the system's ephemeral range, and the
system hands it out again at once: another process's listener (a Dask nanny binds port
0) or outgoing connection can take it before the service we meant it for has started,
which then fails with "Address already in use" (seen once in a full test run: a worker's
nanny took the scheduler's port while the scheduler process was still importing).
Ports below that range are never handed out by the system, so only a service that asks
for that very port can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)  # Linux's default
LOWEST = 10000  # below this sit well-known services' ports (Dask's 8786, 8787...)
ATTEMPTS = 200


def ephemeral_range() -> tuple[int, int]:
    """The (first, last) port the system hands out for port 0 and outgoing connections."""
    try:
        first, last = EPHEMERAL_RANGE_FILE.read_text().split()
        return int(first), int(last)
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now and that the system will not
    hand out by itself (it lies outside the ephemeral range)."""
    first, last = ephemeral_range()
    candidates = [*range(LOWEST, first), *range(last + 1, 65536)]
    for port in random.sample(candidates, min(ATTEMPTS, len(candidates))):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port outside the ephemeral range {first}-{last} on {host}")
